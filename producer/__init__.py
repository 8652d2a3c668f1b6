"""The Finnhub producer service: sources of trades and quotes published to Kafka."""

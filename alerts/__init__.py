"""The fast-path alert service: rules evaluated on every trade, alerts published in milliseconds."""

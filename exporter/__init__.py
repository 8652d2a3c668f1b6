"""The metrics exporter service (`tickhouse metrics`): the drain's lag, loads and freshness and the
marts' coverage, as Prometheus metrics. `exporter.pipeline` reads the figures (also shown by
`tickhouse status`), `exporter.collector` serves them."""

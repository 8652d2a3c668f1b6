"""Exactly-once micro-batch drain of the Kafka topics into the `raw` tables.

`drain.runner.drain_once` is the one entry point; the Airflow DAG `ingest_market_data` and
`tickhouse drain --once` both call it. This package's `__init__` imports nothing heavy so that DAG
files can import `drain.assets` at parse time.
"""

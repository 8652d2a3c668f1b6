"""The Snowflake target of the drain (`target.SnowflakeTarget`): typed rows as staging values
(`staging_rows`), bulk-loaded per session and moved into RAW with the offsets and load stats in one
transaction (`loader`)."""

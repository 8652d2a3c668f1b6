"""The PostgreSQL target of the drain (`target.PostgresTarget`): COPY text (`copy_rows`) streamed
into the partitioned raw tables (`loader`, `partitions`) with the offsets (`offsets`) and load stats
in one transaction; after the commit, retention and the data-quality checks (`retention`,
`quality`)."""

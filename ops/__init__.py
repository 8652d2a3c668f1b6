"""Operations: the umbrella `tickhouse` command, the local stack (`ops.stack`), `tickhouse demo` and a
small client of Airflow's REST API. The top layer: the only one that starts the services."""

#!/usr/bin/env bash
# docker-compose only: PostgreSQL's entrypoint runs this once on an empty volume. It creates
# Airflow's metadata role and database; the warehouse roles, schemas and raw tables are created
# by the airflow-init service with `python -m tickhouse.warehouse` (the same code as `make up`).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
create role airflow login password '${AIRFLOW_DB_PASSWORD}';
create database airflow owner airflow;
SQL

"""DAG `stack_healthcheck`: can Airflow's workers reach the warehouse and Kafka through the
connections that setup provisions (`tickhouse_warehouse`, `tickhouse_kafka`)?

Trigger it from the UI (or the REST API) after `make up`; both tasks green means the stack is wired.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from alerts.airflow_failures import notify_dag_failure, notify_failure


@dag(
    dag_id="stack_healthcheck",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=5), "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    tags=["tickhouse", "ops"],
    doc_md=__doc__,
)
def stack_healthcheck() -> None:
    @task
    def warehouse_answers() -> dict[str, object]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        hook = PostgresHook(postgres_conn_id="tickhouse_warehouse")
        row = hook.get_first(
            "select current_user, current_database(), "
            "(select count(*) from pg_namespace "
            " where nspname in ('raw', 'staging', 'intermediate', 'marts'))"
        )
        if row is None or row[2] != 4:
            raise RuntimeError(f"warehouse schemas missing: got {row}")
        return {"user": row[0], "database": row[1], "schemas": row[2]}

    @task
    def kafka_answers() -> dict[str, int]:
        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

        from tickhouse.config import load_settings

        settings = load_settings()
        admin = KafkaAdminClientHook(kafka_config_id="tickhouse_kafka").get_conn
        topics = admin.list_topics(timeout=10).topics
        missing = [t for t in settings.topics if t not in topics]
        if missing:
            raise RuntimeError(f"Kafka topics missing: {missing}")
        return {t: len(topics[t].partitions) for t in settings.topics}

    warehouse_answers()
    kafka_answers()


stack_healthcheck()

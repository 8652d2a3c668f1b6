-- dbt finds the drain loads it has not transformed yet among the recent ones
-- (dbt_project/models/intermediate/int_raw_loads_pending.sql): by start time, any topic.
set local role ${loader};

create index if not exists load_stats_started_at on raw.load_stats (started_at);

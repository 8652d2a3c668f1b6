-- Bookkeeping of the Kafka -> raw drain, owned by the loader role next to the raw tables.
set local role ${loader};

-- One row per drain run and topic: what was consumed, loaded, quarantined, how far behind the topic
-- still is, and the event-time span of the loaded rows. Written in the same transaction as the rows.
create table if not exists raw.load_stats (
    run_id          text        not null,
    consumer_group  text        not null,
    topic           text        not null,
    target_table    text        not null,
    started_at      timestamptz not null,
    finished_at     timestamptz not null,
    duration_ms     integer     not null,
    consumed        bigint      not null,
    loaded          bigint      not null,
    quarantined     bigint      not null,
    lag_after       bigint,                -- messages left in the topic after this run (NULL: unknown)
    min_event_time  timestamptz,
    max_event_time  timestamptz,
    partitions      jsonb       not null,  -- {"0": {"from": 10, "to": 19}, ...}, offsets consumed
    loaded_at       timestamptz not null default now(),
    primary key (run_id, topic),
    constraint load_stats_consumed check (consumed = loaded + quarantined)
);
create index if not exists load_stats_topic_started on raw.load_stats (topic, started_at);

-- One row per drain run, table and expectation of the Great Expectations suite that checks the
-- rows the run loaded.
create table if not exists raw.dq_results (
    id              bigint      generated always as identity primary key,
    run_id          text        not null,
    target_table    text        not null,
    expectation     text        not null,
    column_name     text,
    success         boolean     not null,
    unexpected      bigint,
    observed        jsonb,
    checked_rows    bigint      not null,
    checked_at      timestamptz not null default now()
);
create index if not exists dq_results_run on raw.dq_results (run_id);

-- Raw landing tables (docs/interfaces/warehouse.md): one row per accepted Kafka message, unique on its Kafka
-- coordinates. Partitioned by event day; the drain creates the day partitions it needs
-- (raw.ensure_day_partition) before it loads into them. Owned by the loader role.
set local role ${loader};

create table if not exists raw.trades (
    symbol          text        not null,
    price           numeric     not null,
    volume          numeric     not null,
    ts              bigint      not null,  -- event time, epoch ms, as published
    event_time      timestamptz not null,  -- the same instant as a timestamp
    conditions      text[],
    source          text,
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_timestamp timestamptz,
    loaded_at       timestamptz not null default now(),
    -- a unique constraint on a partitioned table must contain the partition key; a message's
    -- coordinates always carry the same event_time, so this still admits each message once.
    constraint trades_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset, event_time)
) partition by range (event_time);

create table if not exists raw.quotes (
    symbol          text        not null,
    price           numeric     not null,
    change          numeric,
    change_pct      numeric,
    high            numeric     not null,
    low             numeric     not null,
    open            numeric     not null,
    prev_close      numeric     not null,
    ts              bigint      not null,
    event_time      timestamptz not null,
    source          text,
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_timestamp timestamptz,
    loaded_at       timestamptz not null default now(),
    constraint quotes_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset, event_time)
) partition by range (event_time);

create table if not exists raw.alerts (
    alert_id        text        not null,
    symbol          text        not null,
    rule            text        not null,
    severity        text        not null,
    message         text        not null,
    trade_ts        bigint      not null,
    detected_ts     bigint      not null,
    event_time      timestamptz not null,  -- = trade_ts
    details         jsonb       not null,
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_timestamp timestamptz,
    loaded_at       timestamptz not null default now(),
    constraint alerts_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset, event_time)
) partition by range (event_time);

create table if not exists raw.quarantine (
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_key       bytea,
    kafka_timestamp timestamptz,
    payload         bytea,                 -- the original message bytes, unchanged
    error           text        not null,
    loaded_at       timestamptz not null default now(),
    constraint quarantine_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset)
);

create table if not exists raw.kafka_offsets (
    consumer_group  text    not null,
    topic           text    not null,
    partition       integer not null,
    next_offset     bigint  not null,
    updated_at      timestamptz not null default now(),
    primary key (consumer_group, topic, partition)
);

-- Indexes the incremental dbt models need: new rows by load time (BRIN: loaded_at grows with
-- insertion order, so it stays tiny and nearly free to maintain during COPY) and one symbol's rows in
-- event-time order. Created on the parents, so every day partition gets them.
create index if not exists trades_symbol_event_time on raw.trades (symbol, event_time);
create index if not exists trades_loaded_at on raw.trades using brin (loaded_at);
create index if not exists quotes_symbol_event_time on raw.quotes (symbol, event_time);
create index if not exists quotes_loaded_at on raw.quotes using brin (loaded_at);
create index if not exists alerts_symbol_event_time on raw.alerts (symbol, event_time);
create index if not exists alerts_loaded_at on raw.alerts using brin (loaded_at);
create index if not exists quarantine_topic_loaded_at on raw.quarantine (kafka_topic, loaded_at);

-- Creates the one-day partition of a raw table that holds `day` (UTC), if it is missing.
-- The child is created on its own and then attached: ATTACH PARTITION takes only a SHARE UPDATE
-- EXCLUSIVE lock on the parent, so a drain transaction that adds a day does not block dbt (or
-- anyone else) reading the raw table until it commits, as CREATE TABLE ... PARTITION OF would.
create or replace function raw.ensure_day_partition(parent regclass, day date)
returns void language plpgsql as $$
declare
    parent_name text := (select relname from pg_class where oid = parent);
    child text := format('%s_%s', parent_name, to_char(day, 'YYYYMMDD'));
    child_oid oid := to_regclass(format('raw.%I', child));
begin
    if child_oid is not null and exists (select 1 from pg_inherits where inhrelid = child_oid) then
        return;
    end if;
    if child_oid is null then
        execute format('create table raw.%I (like %s including defaults)', child, parent);
    end if;
    execute format(
        'alter table %s attach partition raw.%I for values from (%L) to (%L)',
        parent, child, (day::timestamp at time zone 'UTC'), ((day + 1)::timestamp at time zone 'UTC')
    );
end;
$$;

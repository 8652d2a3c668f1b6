-- Raw landing tables in Snowflake: the same table and column names as PostgreSQL's
-- (tickhouse/sql/002_raw_tables.sql, 003_drain_stats_and_quality.sql, 005_raw_candles.sql).
-- Idempotent.
-- Snowflake does not enforce unique constraints: the drain inserts a message only when its
-- Kafka coordinates are not there yet (drain/targets/snowflake/loader.py).
-- Numbers are DOUBLE: every number docs/interfaces/kafka-messages.md admits is a finite double, so no message can fail
-- the load (NUMBER(38, s) would reject or round some). No day partitions: Snowflake prunes
-- micro-partitions by event_time on its own; add `cluster by (to_date(event_time))` on big tables.
create schema if not exists raw;

create table if not exists raw.trades (
    symbol          varchar       not null,
    price           double        not null,
    volume          double        not null,
    ts              number(19, 0) not null,
    event_time      timestamp_tz  not null,
    conditions      array,
    source          varchar,
    kafka_topic     varchar       not null,
    kafka_partition integer       not null,
    kafka_offset    number(19, 0) not null,
    kafka_timestamp timestamp_tz,
    loaded_at       timestamp_tz  not null,
    -- the identity the Tickhouse producer gives each trade (null from other producers)
    producer_id     varchar,
    producer_seq    number(19, 0)
);
-- tables made before the identity columns existed
alter table raw.trades add column if not exists producer_id varchar;
alter table raw.trades add column if not exists producer_seq number(19, 0);

create table if not exists raw.quotes (
    symbol          varchar       not null,
    price           double        not null,
    change          double,
    change_pct      double,
    high            double        not null,
    low             double        not null,
    open            double        not null,
    prev_close      double        not null,
    ts              number(19, 0) not null,
    event_time      timestamp_tz  not null,
    source          varchar,
    kafka_topic     varchar       not null,
    kafka_partition integer       not null,
    kafka_offset    number(19, 0) not null,
    kafka_timestamp timestamp_tz,
    loaded_at       timestamp_tz  not null
);

create table if not exists raw.alerts (
    alert_id        varchar       not null,
    symbol          varchar       not null,
    rule            varchar       not null,
    severity        varchar       not null,
    message         varchar       not null,
    trade_ts        number(19, 0) not null,
    detected_ts     number(19, 0) not null,
    event_time      timestamp_tz  not null,
    details         variant       not null,
    kafka_topic     varchar       not null,
    kafka_partition integer       not null,
    kafka_offset    number(19, 0) not null,
    kafka_timestamp timestamp_tz,
    loaded_at       timestamp_tz  not null
);

create table if not exists raw.candles (
    symbol          varchar       not null,
    resolution      varchar       not null,  -- Finnhub's 1, 5, 15, 30, 60, D, W, M
    bar_start       number(19, 0) not null,  -- epoch ms, as published
    event_time      timestamp_tz  not null,  -- the same instant as a timestamp
    open            double        not null,
    high            double        not null,
    low             double        not null,
    close           double        not null,
    volume          double        not null,
    source          varchar,
    kafka_topic     varchar       not null,
    kafka_partition integer       not null,
    kafka_offset    number(19, 0) not null,
    kafka_timestamp timestamp_tz,
    loaded_at       timestamp_tz  not null
);

create table if not exists raw.quarantine (
    kafka_topic     varchar       not null,
    kafka_partition integer       not null,
    kafka_offset    number(19, 0) not null,
    kafka_key       binary,
    kafka_timestamp timestamp_tz,
    payload         binary,        -- the original message bytes, at most the first 64 KiB
    payload_length  number(19, 0), -- the message's full length (NULL: a null value)
    payload_sha256  binary,        -- sha256 of the whole message
    error           varchar       not null,
    loaded_at       timestamp_tz  not null
);
-- tables created before the payload was bounded
alter table raw.quarantine add column if not exists payload_length number(19, 0);
alter table raw.quarantine add column if not exists payload_sha256 binary;

create table if not exists raw.kafka_offsets (
    consumer_group  varchar       not null,
    topic           varchar       not null,
    partition       integer       not null,
    next_offset     number(19, 0) not null,
    updated_at      timestamp_tz  not null
);

create table if not exists raw.load_stats (
    run_id          varchar       not null,
    consumer_group  varchar       not null,
    topic           varchar       not null,
    target_table    varchar       not null,
    started_at      timestamp_tz  not null,
    finished_at     timestamp_tz  not null,
    duration_ms     integer       not null,
    consumed        number(19, 0) not null,
    loaded          number(19, 0) not null,
    quarantined     number(19, 0) not null,
    lag_after       number(19, 0),
    min_event_time  timestamp_tz,
    max_event_time  timestamp_tz,
    partitions      variant       not null,
    loaded_at       timestamp_tz  not null
);

-- trading sessions of the exchange calendars (tickhouse.calendars), loaded by setup_raw
create table if not exists raw.trading_sessions (
    calendar        varchar       not null,
    trading_date    date          not null,
    session_number  integer       not null,
    timezone        varchar       not null,
    pre_open        varchar       not null,
    regular_open    varchar       not null,
    regular_close   varchar       not null,
    post_close      varchar       not null
);

-- company profiles (`tickhouse symbols refresh`, Finnhub /stock/profile2 or the seed offline)
create table if not exists raw.symbol_profiles (
    symbol          varchar       not null,
    name            varchar,
    exchange        varchar,
    currency        varchar,
    country         varchar,
    industry        varchar,
    market_cap      number(38, 6),
    ipo             date,
    weburl          varchar,
    source          varchar       not null,
    fetched_at      timestamp_tz  not null,
    loaded_at       timestamp_tz  not null
);

-- corporate actions (`tickhouse corporate-actions refresh`): one row per (symbol, ex_date, action)
create table if not exists raw.corporate_actions (
    symbol          varchar       not null,
    ex_date         date          not null,
    action          varchar       not null,
    from_factor     number(38, 12),
    to_factor       number(38, 12),
    cash_amount     number(38, 12),
    currency        varchar,
    source          varchar       not null,
    fetched_at      timestamp_tz  not null,
    loaded_at       timestamp_tz  not null,
    primary key (symbol, ex_date, action)
);

-- A bounded raw.quarantine (docs/interfaces/warehouse.md): a rejected message keeps at most its
-- first 64 KiB in `payload`, with its full length and sha256 beside it, so a hostile producer of
-- 1 MB messages fills 16 times less disk; and the table is partitioned by `loaded_at` with the
-- ranges of 006 (months, for rows loaded now), so QUARANTINE_RETENTION_DAYS drops whole partitions.
--
-- The existing table is not rewritten: it is renamed to raw.quarantine_before_007 and attached,
-- as it is, as the partition of every `loaded_at` up to the end of the current month (UTC; ATTACH
-- only reads it to check that bound), so the rest of this month's rows join it and the monthly
-- partitions start with the next month. Its earlier rows have NULL `payload_length` and
-- `payload_sha256`: the drain kept whole payloads then, so their `payload` is the whole message.
--
-- A unique constraint of a partitioned table must contain the partition key, so the coordinates
-- are unique together with `loaded_at`; the drain's offsets (committed with the rows) are what
-- admits each message once, as before. The rows replayed by `tickhouse quarantine replay` are
-- recorded in raw.quarantine_replays, so a second replay does not publish them again.
set local role ${loader};

alter table raw.quarantine rename to quarantine_before_007;
alter table raw.quarantine_before_007
    rename constraint quarantine_kafka_coordinates to quarantine_before_007_kafka_coordinates;
alter index raw.quarantine_topic_loaded_at rename to quarantine_before_007_topic_loaded_at;
alter table raw.quarantine_before_007 add column payload_length integer;
alter table raw.quarantine_before_007 add column payload_sha256 bytea;

create table raw.quarantine (
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_key       bytea,                 -- the message key (at most its first 1 KiB)
    kafka_timestamp timestamptz,
    payload         bytea,                 -- the original message bytes, at most the first 64 KiB
    payload_length  integer,               -- the message's full length in bytes (NULL: null value)
    payload_sha256  bytea,                 -- sha256 of the whole message (NULL: null value)
    error           text        not null,
    loaded_at       timestamptz not null default now(),
    constraint quarantine_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset, loaded_at)
) partition by range (loaded_at);

create index quarantine_topic_loaded_at on raw.quarantine (kafka_topic, loaded_at);

do $$
begin
    execute format(
        'alter table raw.quarantine attach partition raw.quarantine_before_007'
        ' for values from (minvalue) to (%L)',
        (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC'
    );
end;
$$;

create table raw.quarantine_replays (
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    claimed_at      timestamptz not null default now(),
    published_at    timestamptz,           -- NULL: claimed, delivery not confirmed (see the CLI)
    new_partition   integer,
    new_offset      bigint,
    primary key (kafka_topic, kafka_partition, kafka_offset)
);

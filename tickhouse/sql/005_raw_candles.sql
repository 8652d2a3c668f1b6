-- Candles (docs/interfaces/kafka-messages.md `market.candles`, docs/interfaces/warehouse.md `raw.candles`): history from Finnhub's /stock/candle
-- or a file, one row per accepted message, like the other raw tables. `event_time` is the candle's
-- `bar_start` as a timestamp (the partition key); `bar_start` keeps the published epoch ms.
set local role ${loader};

create table if not exists raw.candles (
    symbol          text        not null,
    resolution      text        not null,  -- Finnhub's 1, 5, 15, 30, 60, D, W, M
    bar_start       bigint      not null,  -- epoch ms, as published
    event_time      timestamptz not null,  -- the same instant as a timestamp
    open            numeric     not null,
    high            numeric     not null,
    low             numeric     not null,
    close           numeric     not null,
    volume          numeric     not null,
    source          text,
    kafka_topic     text        not null,
    kafka_partition integer     not null,
    kafka_offset    bigint      not null,
    kafka_timestamp timestamptz,
    loaded_at       timestamptz not null default now(),
    constraint candles_kafka_coordinates unique (kafka_topic, kafka_partition, kafka_offset, event_time)
) partition by range (event_time);

create index if not exists candles_symbol_event_time on raw.candles (symbol, resolution, event_time);
create index if not exists candles_loaded_at on raw.candles using brin (loaded_at);

-- One row per trade message, cast and renamed. A message redelivered by Kafka keeps its
-- coordinates (topic, partition, offset) and its event time; only its first load is kept.
-- A trade the Tickhouse producer resent after a crash is a new message with the same producer
-- identity (producer_id, producer_seq): only its first copy (lowest Kafka coordinates) is kept.
-- Trades without an identity (other producers) are all kept, identical ones included.
-- Zero-volume prints (Finnhub `v = 0`: price updates without size) are kept: they count as
-- trades for open/high/low/close and trade_count, and add nothing to volume or VWAP.
-- Prints above var('max_plausible_price') or var('max_plausible_volume') are flagged
-- (is_implausible_print): the contract admits any finite positive number, but no market
-- trades at 1e308, and the bars leave such prints out.

with source as (

    select * from {{ source('tickhouse', 'trades') }}

),

deduplicated as (

    {{ tickhouse.deduplicate_redeliveries('source') }}

),

first_copies as (

    {{ tickhouse.deduplicate_producer_resends('deduplicated', source('tickhouse', 'trades')) }}

),

renamed as (

    select
        symbol,
        price,
        volume,
        ts as event_ts_ms,
        event_time,
        conditions,
        source as trade_source,
        volume = 0 as is_zero_volume,
        (
            price > {{ var('max_plausible_price') }}
            or volume > {{ var('max_plausible_volume') }}
        ) as is_implausible_print,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        producer_id,
        producer_seq,
        loaded_at

    from first_copies

)

select * from renamed

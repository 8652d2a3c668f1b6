-- One row per candle message (market.candles: Finnhub /stock/candle or a file, via
-- `tickhouse backfill`), cast and renamed; redeliveries dropped as for trades. A candle sent
-- twice (a backfill run again) is two messages: which one makes the bar is decided in
-- int_candles_deduplicated_to_bars.

with source as (

    select * from {{ source('tickhouse', 'candles') }}

),

deduplicated as (

    {{ tickhouse.deduplicate_redeliveries('source') }}

),

renamed as (

    select
        symbol,
        resolution,
        bar_start as candle_start_ms,
        event_time as candle_start,
        open,
        high,
        low,
        close,
        volume,
        source as candle_source,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        loaded_at

    from deduplicated

)

select * from renamed

-- One row per quote message (Finnhub /quote polled by the producer), cast and renamed;
-- redeliveries of the same Kafka message are dropped as for trades.

with source as (

    select * from {{ source('tickhouse', 'quotes') }}

),

deduplicated as (

    {{ tickhouse.deduplicate_redeliveries('source') }}

),

renamed as (

    select
        symbol,
        price,
        change as price_change,
        change_pct as price_change_pct,
        high as day_high,
        low as day_low,
        open as day_open,
        prev_close as previous_close,
        ts as quote_ts_ms,
        event_time as quoted_at,
        source as quote_source,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        loaded_at

    from deduplicated

)

select * from renamed

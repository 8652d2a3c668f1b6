-- One row per alert message from the fast-path alert service, cast and renamed;
-- redeliveries of the same Kafka message are dropped as for trades. The same alert_id
-- published twice (a restarted service) is collapsed later, in fct_alerts.

with source as (

    select * from {{ source('tickhouse', 'alerts') }}

),

deduplicated as (

    {{ tickhouse.deduplicate_redeliveries('source') }}

),

renamed as (

    select
        alert_id,
        symbol,
        rule as rule_name,
        severity,
        message,
        trade_ts as trade_ts_ms,
        detected_ts as detected_ts_ms,
        event_time as trade_time,
        {{ epoch_ms_to_timestamp('detected_ts') }} as detected_at,
        detected_ts - trade_ts as detection_latency_ms,
        details,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        kafka_timestamp,
        loaded_at

    from deduplicated

)

select * from renamed

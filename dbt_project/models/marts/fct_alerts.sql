{{
    config(
        materialized='incremental',
        unique_key='alert_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['alert_id'], 'unique': True},
            {'columns': ['symbol', 'trade_time']},
        ],
    )
}}

-- The alerts of the fast-path alert service, one row per alert_id (the first delivery
-- wins when the service published an alert twice). Incremental on load time: every alert
-- loaded since the last run is added, however old the trade that fired it.

with

alerts as (

    select * from {{ ref('stg_tickhouse__alerts') }}
    {% if is_incremental() %}
    -- by load time only: an alert about an old trade (a historical replay) is still a new alert
    where loaded_at > {{ tickhouse.watermark('loaded_at', var('load_watermark_margin_minutes')) }}
    {% endif %}

),

first_deliveries as (

    select
        *,
        row_number() over (
            partition by alert_id
            order by loaded_at, kafka_topic, kafka_partition, kafka_offset
        ) as delivery_number

    from alerts

),

new_alerts as (

    select first_deliveries.*
    from first_deliveries
    {% if is_incremental() %}
    left join {{ this }} as existing
        on existing.alert_id = first_deliveries.alert_id
    where existing.alert_id is null
      and first_deliveries.delivery_number = 1
    {% else %}
    where first_deliveries.delivery_number = 1
    {% endif %}

),

final as (

    select
        alert_id,
        symbol,
        rule_name,
        rule_name as rule,
        severity,
        message,
        trade_time,
        detected_at,
        trade_ts_ms as trade_ts,
        detected_ts_ms as detected_ts,
        detection_latency_ms,
        details,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        loaded_at

    from new_alerts

)

select * from final

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

-- depends_on: {{ ref('int_raw_loads_pending') }}
-- The alerts of the fast-path alert service, one row per alert_id (the first delivery
-- wins when the service published an alert twice), with their Kafka coordinates and load
-- time (marts.fct_alerts shows the alerts without them). Incremental by drain load: every alert of
-- a pending load is added, however old the trade that fired it.

with

{% if is_incremental() %}

alerts as (

    select stg_alerts.*
    {{ tickhouse.from_pending_loads(ref('stg_tickhouse__alerts'), 'stg_alerts', 'raw.alerts', 'trade_time') }}

),

{% else %}

alerts as (

    select * from {{ ref('stg_tickhouse__alerts') }}

),

{% endif %}

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
        rule_name as rule,
        severity,
        message,
        trade_time,
        detected_at,
        detection_latency_ms,
        details,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        loaded_at

    from new_alerts

)

select * from final

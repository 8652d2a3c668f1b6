-- The alerts of the fast-path alert service, one row each, for BI tools (docs/interfaces/warehouse.md;
-- enforced contract in _marts__models.yml): deduplicated incrementally in
-- intermediate.int_alerts. `details` is the JSON text of the rule's numbers.

with alerts as (

    select * from {{ ref('int_alerts') }}

),

final as (

    select
        alert_id,
        symbol,
        rule,
        severity,
        message,
        trade_time as trade_ts,
        detected_at as detected_ts,
        detection_latency_ms,
        cast(details as {{ dbt.type_string() }}) as details

    from alerts

)

select * from final

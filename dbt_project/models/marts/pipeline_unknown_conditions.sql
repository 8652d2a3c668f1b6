{{ config(materialized='view') }}

-- The trade-condition codes the seed trade_conditions does not list, one row per code: how many
-- prints carried it (the bars and the alert rules take them as regular trades), in how many
-- symbols, and when it was first and last seen. Empty while every code is known. For
-- `tickhouse status`, the metrics exporter and anyone extending the table. A view over the
-- small table int_unknown_trade_conditions: a code added to the seed leaves it at once.

with

unknown_per_minute as (

    select * from {{ ref('int_unknown_trade_conditions') }}

),

known_codes as (

    select * from {{ ref('trade_conditions') }}

),

still_unknown as (

    select unknown_per_minute.*
    from unknown_per_minute
    left join known_codes
        on known_codes.code = unknown_per_minute.code
    where known_codes.code is null

),

final as (

    select
        code,
        cast(sum(prints) as {{ dbt.type_bigint() }}) as prints,
        count(distinct symbol) as symbols,
        min(first_event_time) as first_event_time,
        max(last_event_time) as last_event_time,
        max(last_loaded_at) as last_loaded_at

    from still_unknown
    group by code

)

select * from final

{{ config(materialized='table') }}

-- One row per trading calendar of raw.trading_sessions, with its time zone (24/7, which
-- has no rows there, is UTC).

with sessions as (

    select * from {{ source('tickhouse', 'trading_sessions') }}

),

final as (

    select distinct
        calendar,
        timezone

    from sessions

)

select * from final

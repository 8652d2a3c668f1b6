{{
    config(
        materialized='table',
        indexes=[
            {'columns': ['calendar', 'trading_date'], 'unique': True},
        ],
    )
}}

-- The sessions of raw.trading_sessions (exchange_calendars) as instants: when each one's
-- extended hours open, its regular session opens and closes, and its extended hours end.

with sessions as (

    select * from {{ source('tickhouse', 'trading_sessions') }}

),

final as (

    select
        calendar,
        trading_date,
        session_number,
        timezone,
        {{ tickhouse.local_time_instant('trading_date', 'pre_open', 'timezone') }} as pre_open,
        {{ tickhouse.local_time_instant('trading_date', 'regular_open', 'timezone') }} as regular_open,
        {{ tickhouse.local_time_instant('trading_date', 'regular_close', 'timezone') }} as regular_close,
        {{ tickhouse.local_time_instant('trading_date', 'post_close', 'timezone') }} as post_close

    from sessions

)

select * from final

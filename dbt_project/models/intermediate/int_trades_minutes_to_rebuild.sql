{{
    config(
        materialized='table',
    )
}}

-- The one-minute bars (symbol, minute) that received a trade in a pending load: exactly what
-- int_trades_aggregated_to_minute_bars rebuilds this run, whatever the trades' event time,
-- when it rebuilds minutes; when it merges the new trades into them instead, the minutes it
-- writes (one scan of the new trades).
-- A table, not SQL text: a run touching 100,000 minutes joins 100,000 rows.

{%- set one_minute = {'minutes': 1} %}

with

trades as (

    select * from {{ ref('stg_tickhouse__trades') }}

),

-- a full refresh rebuilds every minute anyway; this set would only cost a scan of raw
{% if flags.FULL_REFRESH %}
touched_minutes as (

    select
        cast(null as {{ dbt.type_string() }}) as symbol,
        {{ tickhouse.timestamp_tz_literal('1900-01-01 00:00:00+00:00') }} as bar_start
    where 1 = 0

),
{% else %}
touched_minutes as (

    select distinct
        trades.symbol,
        {{ tickhouse.bar_bucket_start(one_minute, 'trades.event_time') }} as bar_start
    {{ tickhouse.from_pending_loads('trades', 'trades', 'raw.trades') }}

),
{% endif %}

final as (

    select
        symbol,
        bar_start

    from touched_minutes

)

select * from final

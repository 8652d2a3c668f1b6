{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_start'], 'unique': True},
            {'columns': ['symbol', 'trading_date']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- depends_on: {{ ref('int_trades_minutes_to_rebuild') }}
-- One-minute bars per symbol: the building block of every bar interval.
-- Incremental runs rebuild exactly the minutes that received a trade in a pending drain load
-- (int_trades_minutes_to_rebuild), from all of that minute's trades, whatever their event
-- time; a minute is written only when its values changed, so `updated_at` marks real changes.
-- Each minute carries the trading calendar of its symbol, and the trading date and session
-- (pre, regular, post, closed) it falls in: daily bars are made of regular-session minutes.

{%- set order_columns = ['event_ts_ms', 'kafka_partition', 'kafka_offset'] %}
{%- set one_minute = {'minutes': 1} %}

with

{% if is_incremental() %}

minutes_to_rebuild as (

    select * from {{ ref('int_trades_minutes_to_rebuild') }}

),

trades as (

    select * from {{ ref('stg_tickhouse__trades') }}

),

-- one (symbol, event_time) index range per minute, in the partition that holds it
trades_in_scope as (

    select trades.*
    from minutes_to_rebuild
    inner join trades
        on trades.symbol = minutes_to_rebuild.symbol
        and trades.event_time >= minutes_to_rebuild.bar_start
        and trades.event_time < {{ tickhouse.bar_bucket_end(one_minute, 'minutes_to_rebuild.bar_start') }}

),

{% else %}

trades_in_scope as (

    select * from {{ ref('stg_tickhouse__trades') }}

),

{% endif %}

aggregated as (

    select
        symbol,
        {{ tickhouse.bar_bucket_start(one_minute, 'event_time') }} as bar_start,
        {{ tickhouse.first_by('price', order_columns) }} as open,
        max(price) as high,
        min(price) as low,
        {{ tickhouse.last_by('price', order_columns) }} as close,
        sum(volume) as volume,
        sum(price * volume) as price_volume,
        count(*) as trade_count,
        max(loaded_at) as last_loaded_at

    from trades_in_scope
    -- prints no market could produce stay in raw (and in the drain's data-quality warnings)
    -- but out of the bars: one 1e308 price would overflow every indicator computed after it
    where not is_implausible_print
    group by 1, 2

),

with_calendar as (

    select
        aggregated.*,
        {{ tickhouse.symbol_calendar('reference.calendar', 'aggregated.symbol') }} as calendar
    from aggregated
    left join {{ ref('symbol_reference') }} as reference
        on reference.symbol = aggregated.symbol

),

with_session as (

    {{ tickhouse.with_trading_session('with_calendar', 'bar_start', ref('int_trading_calendars'), ref('int_trading_sessions')) }}

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'price_volume', 'trade_count', 'last_loaded_at', 'calendar', 'trading_date', 'session'] %}

changed as (

    {{ tickhouse.rows_changed_since_last_run('with_session', ['symbol', 'bar_start'], value_columns) }}

),

final as (

    select
        symbol,
        bar_start,
        open,
        high,
        low,
        close,
        volume,
        price_volume,
        trade_count,
        calendar,
        trading_date,
        session,
        last_loaded_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

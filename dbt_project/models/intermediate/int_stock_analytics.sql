{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trading_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'trading_date'], 'unique': True},
            {'columns': ['trading_date']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- One row per symbol and trading date, from its daily bars (one regular session each), for
-- marts.stock_analytics. Windows and changes count the *sessions* of the symbol's trading
-- calendar, not calendar days or rows: the change compares with the previous session and is
-- NULL when the symbol has no bar on it (a gap, made visible by sessions_since_previous);
-- a 7- or 30-session average needs a bar on every one of those sessions.
-- Incremental runs recompute every day of the symbols whose daily bars changed (a symbol's
-- whole daily history is a few thousand rows; its windows reach back a year), and nothing of
-- the others; a symbol whose splits changed (int_split_restatements) counts as changed.
-- Prices are split-adjusted (int_bars_split_adjusted): a split's ex-date shows the real move.
-- A daily bar without a close (only prints that update no price) is no session's close here.
-- Formulas are in _intermediate__models.yml.

{#- int_bars is named where read: PostgreSQL would materialize an import CTE read twice -#}
{%- set bars = ref('int_bars_split_adjusted') %}

-- depends_on: {{ ref('int_bars') }}, {{ ref('int_split_restatements') }}

with

{% if is_incremental() %}

changed_symbols as (

    select symbol
    from {{ ref('int_bars') }}
    where bar_interval = '1d'
      and updated_at > {{ tickhouse.watermark('bars_updated_at') }}

    union

    select symbol
    from {{ ref('int_split_restatements') }}
    where updated_at > {{ tickhouse.watermark('updated_at') }}

),

daily_bars as (

    select daily.*
    from changed_symbols
    inner join {{ bars }} as daily
        on daily.symbol = changed_symbols.symbol
        and daily.bar_interval = '1d'
        and daily.adj_close is not null

),

{% else %}

daily_bars as (

    select * from {{ bars }}
    where bar_interval = '1d'
      and adj_close is not null

),

{% endif %}

-- each daily bar's session number in the symbol's calendar (a day number on 24/7)
sessions as (

    select
        daily_bars.symbol,
        daily_bars.trading_date,
        daily_bars.adj_close as daily_close,
        daily_bars.adj_high as daily_high,
        daily_bars.adj_low as daily_low,
        daily_bars.adj_volume as daily_volume,
        coalesce(
            trading_sessions.session_number,
            {{ dbt.datediff("cast('1970-01-01' as date)", 'daily_bars.trading_date', 'day') }}
        ) as session_number,
        {{ dbt.datediff("cast('1970-01-01' as date)", 'daily_bars.trading_date', 'day') }} as day_number,
        max(daily_bars.updated_at) over (partition by daily_bars.symbol) as bars_updated_at

    from daily_bars
    left join {{ ref('symbol_reference') }} as reference
        on reference.symbol = daily_bars.symbol
    left join {{ ref('int_trading_sessions') }} as trading_sessions
        on trading_sessions.calendar = {{ tickhouse.symbol_calendar('reference.calendar', 'daily_bars.symbol') }}
        and trading_sessions.trading_date = daily_bars.trading_date

),

with_previous as (

    select
        *,
        lag(trading_date) over (partition by symbol order by trading_date) as previous_trading_date,
        lag(daily_close) over (partition by symbol order by trading_date) as previous_bar_close,
        session_number - lag(session_number) over (partition by symbol order by trading_date)
            as sessions_since_previous

    from sessions

),

with_change as (

    select
        *,
        -- only against the session right before: NULL across a gap
        case when sessions_since_previous = 1 then previous_bar_close end as previous_close,
        case
            when sessions_since_previous = 1 and previous_bar_close <> 0
                then 100 * (daily_close - previous_bar_close) / previous_bar_close
        end as daily_change_pct

    from with_previous

),

windowed as (

    {%- set last_7_sessions = 'partition by symbol order by session_number range between 6 preceding and current row' %}
    {%- set last_30_sessions = 'partition by symbol order by session_number range between 29 preceding and current row' %}
    {%- set last_52_weeks = 'partition by symbol order by day_number range between 363 preceding and current row' %}

    select
        *,
        avg(daily_close) over ({{ last_7_sessions }}) as avg_close_7,
        count(daily_close) over ({{ last_7_sessions }}) as closes_7,
        avg(daily_close) over ({{ last_30_sessions }}) as avg_close_30,
        count(daily_close) over ({{ last_30_sessions }}) as closes_30,
        stddev_samp(daily_change_pct) over ({{ last_30_sessions }}) as stddev_change_30,
        count(daily_change_pct) over ({{ last_30_sessions }}) as changes_30,
        max(daily_high) over ({{ last_52_weeks }}) as high_52_week,
        min(daily_low) over ({{ last_52_weeks }}) as low_52_week

    from with_change

),

final as (

    select
        symbol,
        trading_date,
        daily_close,
        previous_trading_date,
        sessions_since_previous,
        previous_close,
        round(daily_change_pct, 4) as daily_change_pct,
        case when closes_7 = 7 then round(avg_close_7, 4) end as ma_7_day,
        case when closes_30 = 30 then round(avg_close_30, 4) end as ma_30_day,
        case when changes_30 = 30 then round(cast(stddev_change_30 as {{ dbt.type_numeric() }}), 4) end
            as volatility_30_day,
        high_52_week,
        low_52_week,
        daily_volume,
        bars_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from windowed

)

select * from final

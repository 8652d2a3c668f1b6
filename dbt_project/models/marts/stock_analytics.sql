{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trading_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'trading_date'], 'unique': True},
            {'columns': ['bars_updated_at']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- One row per symbol and trading day (America/New_York), from the daily bars. Incremental
-- runs recompute every day of the symbols whose daily bars changed (a symbol's whole daily
-- history is a few thousand rows; its windows reach back a year), and nothing of the others.
-- Formulas are in _marts__models.yml.

{#- fct_bars is named where read: PostgreSQL would materialize an import CTE read twice -#}
{%- set bars = ref('fct_bars') %}

with

{% if is_incremental() %}

changed_symbols as (

    select distinct symbol
    from {{ bars }}
    where bar_interval = '1d'
      and updated_at > {{ tickhouse.watermark('bars_updated_at') }}

),

daily_bars as (

    select daily.*
    from changed_symbols
    inner join {{ bars }} as daily
        on daily.symbol = changed_symbols.symbol
        and daily.bar_interval = '1d'

),

{% else %}

daily_bars as (

    select * from {{ bars }}
    where bar_interval = '1d'

),

{% endif %}

trading_days as (

    select
        symbol,
        {{ tickhouse.trading_date('bar_start') }} as trading_date,
        close as daily_close,
        high as daily_high,
        low as daily_low,
        volume as daily_volume,
        max(updated_at) over (partition by symbol) as bars_updated_at

    from daily_bars

),

day_numbered as (

    select
        *,
        {{ dbt.datediff("cast('1970-01-01' as date)", 'trading_date', 'day') }} as day_number

    from trading_days

),

with_previous_close as (

    select
        *,
        lag(daily_close) over (partition by symbol order by trading_date) as previous_close

    from day_numbered

),

with_change as (

    select
        *,
        100 * (daily_close - previous_close) / nullif(previous_close, 0) as daily_change_pct

    from with_previous_close

),

windowed as (

    {%- set last_7_days = 'partition by symbol order by trading_date rows between 6 preceding and current row' %}
    {%- set last_30_days = 'partition by symbol order by trading_date rows between 29 preceding and current row' %}
    {%- set last_52_weeks = 'partition by symbol order by day_number range between 363 preceding and current row' %}

    select
        *,
        avg(daily_close) over ({{ last_7_days }}) as avg_close_7,
        count(daily_close) over ({{ last_7_days }}) as closes_7,
        avg(daily_close) over ({{ last_30_days }}) as avg_close_30,
        count(daily_close) over ({{ last_30_days }}) as closes_30,
        stddev_samp(daily_change_pct) over ({{ last_30_days }}) as stddev_change_30,
        count(daily_change_pct) over ({{ last_30_days }}) as changes_30,
        max(daily_high) over ({{ last_52_weeks }}) as high_52_week,
        min(daily_low) over ({{ last_52_weeks }}) as low_52_week

    from with_change

),

final as (

    select
        windowed.symbol,
        windowed.trading_date,
        windowed.daily_close,
        windowed.previous_close,
        windowed.daily_change_pct,
        case when windowed.closes_7 = 7 then windowed.avg_close_7 end as ma_7_day,
        case when windowed.closes_30 = 30 then windowed.avg_close_30 end as ma_30_day,
        case when windowed.changes_30 = 30 then windowed.stddev_change_30 end as volatility_30_day,
        windowed.high_52_week,
        windowed.low_52_week,
        windowed.daily_volume,
        windowed.bars_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from windowed

)

select * from final

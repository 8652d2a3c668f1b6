{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_interval', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_interval', 'bar_start'], 'unique': True},
            {'columns': ['updated_at']},
        ],
    )
}}

-- depends_on: {{ ref('int_raw_loads_pending') }}
-- One bar per (symbol, bar_interval, bar_start) from the candles of `tickhouse backfill`, for
-- fct_bars to use where no trade makes that bar. A candle makes the bar of its own
-- resolution only (1 -> 1m, 5 -> 5m, 15 -> 15m, 60 -> 1h, D -> 1d; 30, W and M stay in raw):
-- an intraday candle when it starts on that interval's bucket boundary (UTC-aligned), a daily
-- candle the 1d bar of its UTC date (Finnhub stamps daily candles 00:00 UTC of the trading
-- date) when that date is a session of the symbol's calendar. When several candles make the
-- same bar (a backfill run twice, or corrected data),
-- the latest load wins, and within one load the last message (highest Kafka offset).
-- Incremental runs rebuild the (symbol, resolution, UTC day)s that a pending load touched.

{%- set intervals = tickhouse.bar_intervals() %}
{#- named where read: PostgreSQL would materialize an import CTE read twice, all of raw.candles -#}
{%- set candles = ref('stg_tickhouse__candles') %}

with

{% if is_incremental() %}

pending_loads as (

    select * from {{ ref('int_raw_loads_pending') }}
    where target_table = 'raw.candles'

),

touched_days as (

    select distinct
        candles.symbol,
        candles.resolution,
        {{ tickhouse.utc_day_start('candles.candle_start') }} as day_start
    from pending_loads
    inner join {{ candles }} as candles
        on {{ tickhouse.loaded_by('candles', 'pending_loads', 'candle_start') }}

),

candles_in_scope as (

    select candles.*
    from touched_days
    inner join {{ candles }} as candles
        on candles.symbol = touched_days.symbol
        and candles.resolution = touched_days.resolution
        and candles.candle_start >= touched_days.day_start
        and candles.candle_start < {{ dbt.dateadd('day', 1, 'touched_days.day_start') }}

),

{% else %}

candles_in_scope as (

    select * from {{ candles }}

),

{% endif %}

with_calendar as (

    select
        candles_in_scope.*,
        {{ tickhouse.symbol_calendar('reference.calendar', 'candles_in_scope.symbol') }} as calendar,
        {{ tickhouse.utc_date('candles_in_scope.candle_start') }} as candle_date
    from candles_in_scope
    left join {{ ref('symbol_reference') }} as reference
        on reference.symbol = candles_in_scope.symbol

),

-- a daily candle's date must be a session of the symbol's calendar (every day is, on 24/7)
daily_candles as (

    select
        with_calendar.*,
        {{ tickhouse.day_start('with_calendar.candle_date', tickhouse.calendar_timezone('calendars.timezone')) }} as day_start
    from with_calendar
    left join {{ ref('int_trading_calendars') }} as calendars
        on calendars.calendar = with_calendar.calendar
    left join {{ ref('int_trading_sessions') }} as sessions
        on sessions.calendar = with_calendar.calendar
        and sessions.trading_date = with_calendar.candle_date
    where with_calendar.resolution = 'D'
      and (with_calendar.calendar = '24/7' or sessions.calendar is not null)

),

as_bars as (

    {% for interval in intervals %}
    select
        symbol,
        '{{ interval.name }}' as bar_interval,
        {% if interval.minutes is none -%}
        day_start as bar_start,
        candle_date as trading_date,
        {%- else -%}
        candle_start as bar_start,
        cast(null as date) as trading_date,
        {%- endif %}
        open,
        high,
        low,
        close,
        volume,
        loaded_at as candle_loaded_at,
        kafka_partition,
        kafka_offset
    {% if interval.minutes is none -%}
    from daily_candles
    {%- else -%}
    from with_calendar
    where resolution = '{{ interval.resolution }}'
      and candle_start = {{ tickhouse.bar_bucket_start(interval, 'candle_start') }}
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

latest as (

    select *
    from (
        select
            as_bars.*,
            row_number() over (
                partition by symbol, bar_interval, bar_start
                order by candle_loaded_at desc, kafka_partition desc, kafka_offset desc
            ) as load_rank
        from as_bars
    ) as ranked
    where load_rank = 1

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'candle_loaded_at'] %}

changed as (

    {{ tickhouse.rows_changed_since_last_run('latest', ['symbol', 'bar_interval', 'bar_start'], value_columns) }}

),

final as (

    select
        symbol,
        bar_interval,
        bar_start,
        trading_date,
        open,
        high,
        low,
        close,
        volume,
        candle_loaded_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

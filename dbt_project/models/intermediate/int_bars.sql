{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_interval', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_interval', 'bar_start'], 'unique': True},
            {'columns': ['bar_interval', 'bar_start']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- OHLCV bars per symbol for every interval of bar_intervals(), whatever the event time: what
-- marts.fct_bars shows, plus the columns the incremental runs need.
-- Intraday bars (1m, 5m, 15m, 1h; buckets aligned to the hour in UTC) are rolled up from the
-- minute bars (a minute lies in exactly one bar of every interval) and carry the trading
-- date of their start and the session of their trades: pre, regular, post or closed when
-- every minute bar in the bucket lies in that session, `mixed` when they lie in several (the
-- 13:00 UTC 1h bar holding both pre-market trades and the 13:30 open). So a filter on
-- session = 'regular' keeps only regular-session volume; regular totals of a day are its 1d
-- bar, or the 1m bars. A candle-made bar carries the session at its start.
-- Prices roll up over the minute bars that have them (a minute of prints that set no price,
-- such as odd lots only, has NULL open/high/low/close and VWAP and keeps its volume): open
-- is the first non-NULL open, close the last non-NULL close, VWAP weighs the minutes'
-- price_volume by their vwap_volume. A bucket with no priced minute has NULL prices and
-- VWAP, its volume and trade_count, in every interval. A 1d bar is one regular
-- session of the symbol's trading calendar: the minute bars of that session, its bar_start
-- 00:00 of the trading date in the calendar's time zone; pre-market and after-hours trades are
-- in the intraday bars only (the daily bar is the session's official OHLC, as a daily candle).
-- From candles (`tickhouse backfill`): where no trade falls in a bar, the candle of that
-- interval's resolution makes it. The precedence rule: **trades win** — a bar with at least
-- one trade is built from the trades alone (exact VWAP and trade count of what Tickhouse
-- holds); candles fill the bars no trade reaches. `bar_source` says which. Candle bars are
-- as traded too (int_candles_deduplicated_to_bars undoes the splits a Finnhub daily candle
-- was served with).
-- Incremental runs rebuild exactly the bars that contain a changed minute bar or candle bar,
-- and write only the bars whose values changed.

{%- set intervals = tickhouse.bar_intervals() %}
{%- set intraday = intervals | selectattr('minutes') | list %}
-- The inputs are named where they are read, not in import CTEs: PostgreSQL materializes a CTE
-- that is read twice, and the incremental path must reach only the rows that changed through
-- the indexes.
{%- set minute_bars = ref('int_trades_aggregated_to_minute_bars') %}
{%- set candle_bars = ref('int_candles_deduplicated_to_bars') %}
{%- set calendars = ref('int_trading_calendars') %}

with

{% if is_incremental() %}

{%- set changed_since = tickhouse.watermark('source_updated_at') %}

changed_minute_bars as (

    select
        symbol,
        bar_start,
        trading_date,
        session
    from {{ minute_bars }}
    where updated_at > {{ changed_since }}

),

intraday_to_rebuild as (

    {% for interval in intraday %}
    select
        symbol,
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bar_start,
        {{ tickhouse.bar_bucket_end(interval, tickhouse.bar_bucket_start(interval, 'bar_start')) }} as bar_end
    from changed_minute_bars
    {% if not loop.last %}union{% endif %}
    {% endfor %}

),

sessions_to_rebuild as (

    select distinct
        symbol,
        trading_date
    from changed_minute_bars
    where session = 'regular'

),

intraday_in_scope as (

    select
        intraday_to_rebuild.bar_interval,
        intraday_to_rebuild.bar_start as bucket_start,
        minute_bars.*
    from intraday_to_rebuild
    inner join {{ minute_bars }} as minute_bars
        on minute_bars.symbol = intraday_to_rebuild.symbol
        and minute_bars.bar_start >= intraday_to_rebuild.bar_start
        and minute_bars.bar_start < intraday_to_rebuild.bar_end

),

daily_in_scope as (

    select minute_bars.*
    from sessions_to_rebuild
    inner join {{ minute_bars }} as minute_bars
        on minute_bars.symbol = sessions_to_rebuild.symbol
        and minute_bars.trading_date = sessions_to_rebuild.trading_date
        and minute_bars.session = 'regular'

),

candle_bars_in_scope as (

    select *
    from {{ candle_bars }}
    where updated_at > {{ changed_since }}

),

{% else %}

intraday_in_scope as (

    {% for interval in intraday %}
    select
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bucket_start,
        minute_bars.*
    from {{ minute_bars }} as minute_bars
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

daily_in_scope as (

    select *
    from {{ minute_bars }}
    where session = 'regular'

),

candle_bars_in_scope as (

    select * from {{ candle_bars }}

),

{% endif %}

{%- set aggregates %}
        {{ tickhouse.first_by('open', [tickhouse.epoch_seconds('bar_start')], where='open is not null') }} as open,
        max(high) as high,
        min(low) as low,
        {{ tickhouse.last_by('close', [tickhouse.epoch_seconds('bar_start')], where='close is not null') }} as close,
        sum(volume) as volume,
        sum(price_volume) / nullif(sum(vwap_volume), 0) as vwap,
        sum(trade_count) as trade_count,
        case when min(session) = max(session) then min(session) else 'mixed' end as minutes_session,
        'trades' as bar_source,
        max(calendar) as calendar,
        max(updated_at) as source_updated_at
{%- endset %}

intraday_trade_bars as (

    select
        symbol,
        bar_interval,
        bucket_start as bar_start,
        cast(null as date) as daily_trading_date,
        {{ aggregates }}

    from intraday_in_scope
    group by 1, 2, 3

),

daily_trade_bars as (

    select
        symbol,
        '1d' as bar_interval,
        trading_date,
        {{ aggregates }}

    from daily_in_scope
    group by 1, 2, 3

),

trade_bars as (

    select * from intraday_trade_bars

    union all

    select
        daily_trade_bars.symbol,
        daily_trade_bars.bar_interval,
        {{ tickhouse.day_start('daily_trade_bars.trading_date', tickhouse.calendar_timezone('calendars.timezone')) }} as bar_start,
        daily_trade_bars.trading_date as daily_trading_date,
        daily_trade_bars.open,
        daily_trade_bars.high,
        daily_trade_bars.low,
        daily_trade_bars.close,
        daily_trade_bars.volume,
        daily_trade_bars.vwap,
        daily_trade_bars.trade_count,
        daily_trade_bars.minutes_session,
        daily_trade_bars.bar_source,
        daily_trade_bars.calendar,
        daily_trade_bars.source_updated_at
    from daily_trade_bars
    left join {{ calendars }} as calendars
        on calendars.calendar = daily_trade_bars.calendar

),

-- a candle makes its bar only where no trade does; the trades of a bar the candle shares
-- with are looked up whether they changed in this run or not
candle_only_bars as (

    select
        candles.symbol,
        candles.bar_interval,
        candles.bar_start,
        candles.trading_date as daily_trading_date,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        cast(null as {{ dbt.type_numeric() }}) as vwap,
        cast(null as {{ dbt.type_numeric() }}) as trade_count,
        cast(null as {{ dbt.type_string() }}) as minutes_session,
        'candles' as bar_source,
        {{ tickhouse.symbol_calendar('reference.calendar', 'candles.symbol') }} as calendar,
        candles.updated_at as source_updated_at
    from candle_bars_in_scope as candles
    left join {{ ref('symbol_reference') }} as reference
        on reference.symbol = candles.symbol
    where not exists (
        select 1 from trade_bars
        where trade_bars.symbol = candles.symbol
          and trade_bars.bar_interval = candles.bar_interval
          and trade_bars.bar_start = candles.bar_start
    )
    {% if is_incremental() %}
      and not exists (
        select 1 from {{ this }} as existing
        where existing.symbol = candles.symbol
          and existing.bar_interval = candles.bar_interval
          and existing.bar_start = candles.bar_start
          and existing.bar_source = 'trades'
      )
    {% endif %}

),

rebuilt as (

    select * from trade_bars
    union all
    select * from candle_only_bars

),

-- the session and trading date of each intraday bar's start; a daily bar is a regular session
with_session as (

    {{ tickhouse.with_trading_session('rebuilt', 'bar_start', calendars, ref('int_trading_sessions')) }}

),

bars as (

    select
        symbol,
        bar_interval,
        bar_start,
        case when bar_interval = '1d' then daily_trading_date else trading_date end as trading_date,
        case
            when bar_interval = '1d' then 'regular'
            when bar_source = 'trades' then minutes_session
            else session
        end as session,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        trade_count,
        bar_source,
        source_updated_at
    from with_session

),

{% set value_columns = ['trading_date', 'session', 'open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count', 'bar_source'] %}

changed as (

    {{ tickhouse.rows_changed_since_last_run('bars', ['symbol', 'bar_interval', 'bar_start'], value_columns) }}

),

final as (

    select
        symbol,
        bar_interval,
        bar_start,
        trading_date,
        session,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        cast(trade_count as bigint) as trade_count,
        bar_source,
        source_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

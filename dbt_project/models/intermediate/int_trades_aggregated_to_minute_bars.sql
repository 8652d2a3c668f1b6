{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook=["{{ tickhouse.add_minute_bar_key_columns() }}"],
        indexes=[
            {'columns': ['symbol', 'bar_start'], 'unique': True},
            {'columns': ['symbol', 'trading_date']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- depends_on: {{ ref('int_trades_minutes_to_rebuild') }}
-- depends_on: {{ ref('int_raw_loads_pending') }}
-- depends_on: {{ ref('trade_conditions') }}
-- One-minute bars per symbol: the building block of every bar interval.
-- Incremental runs on PostgreSQL merge the trades of the pending drain loads into the stored
-- minutes, whatever their event time, reading only those trades: sums and counts add up,
-- high/low take the larger/smaller, open/close the first/last of the stored and new sort keys
-- (open_key, close_key: event time, Kafka partition, offset and price, as first_by/last_by
-- order them), so a load costs what it holds, not what its minutes held before. When the last
-- run that wrote minute bars did not record its loads as transformed (it failed after this
-- model), a pending load may be in the bars already: that run, and every run elsewhere than
-- PostgreSQL, rebuilds exactly the minutes that received a trade in a pending load
-- (int_trades_minutes_to_rebuild) from all of that minute's trades instead
-- (macros/bars/minute_bars_merge.sql), and writes a minute only when its values changed.
-- Either way `updated_at` marks real changes.
-- Each minute carries the trading calendar of its symbol, and the trading date and session
-- (pre, regular, post, closed) it falls in: daily bars are made of regular-session minutes.
-- Trade conditions (seed trade_conditions, the consolidated CTA/UTP rules): open/close come
-- from the prints that update the last price, high/low from those that update high/low,
-- volume from those that update volume. VWAP weighs the prints that update both the last
-- price and the volume (price_volume / vwap_volume), so an odd lot, an average-price or a
-- cash-sale print adds to volume but not to VWAP. trade_count counts every print of the
-- minute, eligible or not. A minute of ineligible prints only keeps its volume and
-- trade_count with NULL prices and VWAP. A `v = 0` price update (forex, crypto) is a print
-- like any other: it moves the prices its conditions allow, adds nothing to volume or VWAP,
-- and counts in trade_count.
-- A table built before the trade-condition rules (no vwap_volume, unknown_condition_prints) is
-- rebuilt whole by the next run, incremental or not: every minute under the rules, the new
-- columns added (on_schema_change='append_new_columns'), every minute marked as changed so
-- that int_bars and the indicators downstream are rebuilt from them.

{%- set rebuild_every_minute = tickhouse.built_before_columns(['vwap_volume', 'unknown_condition_prints', 'open_key', 'close_key']) %}
{%- set merge_new_trades = is_incremental() and not rebuild_every_minute and tickhouse.minute_bars_merge_new_trades() %}
{%- set order_columns = ['event_ts_ms', 'kafka_partition', 'kafka_offset'] %}
{%- set one_minute = {'minutes': 1} %}

with

{% if merge_new_trades %}

-- the trades of the pending loads only
trades_in_scope as (

    select trades.*
    {{ tickhouse.from_pending_loads(ref('stg_tickhouse__trades'), 'trades', 'raw.trades') }}

),

{% elif is_incremental() and not rebuild_every_minute %}

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

{% if var('bench_every_trade_regular') %}

-- the baseline of bench/bench_trade_conditions.py only (var bench_every_trade_regular, false
-- unless a bench sets it): every print counts as regular, the condition lookup compiled out
eligible_trades as (

    select
        trades_in_scope.*,
        true as updates_last,
        true as updates_high_low,
        true as updates_volume,
        false as has_unknown_condition
    from trades_in_scope

),

{% else %}

condition_sets as {{ tickhouse.materialized_cte() }} (

    {{ tickhouse.trade_condition_sets('trades_in_scope') }}

),

eligible_trades as (

    select
        trades_in_scope.*,
        condition_sets.updates_last,
        condition_sets.updates_high_low,
        condition_sets.updates_volume,
        condition_sets.unknown_codes > 0 as has_unknown_condition
    from trades_in_scope
    inner join condition_sets
        on condition_sets.condition_key = {{ tickhouse.trade_condition_key('trades_in_scope.conditions') }}

),

{% endif %}

aggregated as (

    select
        symbol,
        {{ tickhouse.bar_bucket_start(one_minute, 'event_time') }} as bar_start,
        {{ tickhouse.first_by('price', order_columns, where='updates_last') }} as open,
        max(case when updates_high_low then price end) as high,
        min(case when updates_high_low then price end) as low,
        {{ tickhouse.last_by('price', order_columns, where='updates_last') }} as close,
        sum(case when updates_volume then volume else 0 end) as volume,
        sum(case when updates_last and updates_volume then price * volume else 0 end) as price_volume,
        sum(case when updates_last and updates_volume then volume else 0 end) as vwap_volume,
        count(*) as trade_count,
        sum(case when has_unknown_condition then 1 else 0 end) as unknown_condition_prints,
        max(loaded_at) as last_loaded_at,
        {{ tickhouse.first_by_key('price', order_columns, where='updates_last') }} as open_key,
        {{ tickhouse.last_by_key('price', order_columns, where='updates_last') }} as close_key

    from eligible_trades
    -- prints no market could produce stay in raw (and in the drain's data-quality warnings)
    -- but out of the bars: one 1e308 price would overflow every indicator computed after it
    where not is_implausible_print
    group by 1, 2

),

{% if merge_new_trades %}

-- the new trades' minute added to the stored one (a minute not stored yet is the new one)
merged as (

    select
        new_minutes.symbol,
        new_minutes.bar_start,
        {{ tickhouse.value_of_key('least(existing.open_key, new_minutes.open_key)', order_columns) }} as open,
        greatest(existing.high, new_minutes.high) as high,
        least(existing.low, new_minutes.low) as low,
        {{ tickhouse.value_of_key('greatest(existing.close_key, new_minutes.close_key)', order_columns) }} as close,
        coalesce(existing.volume, 0) + new_minutes.volume as volume,
        coalesce(existing.price_volume, 0) + new_minutes.price_volume as price_volume,
        coalesce(existing.vwap_volume, 0) + new_minutes.vwap_volume as vwap_volume,
        coalesce(existing.trade_count, 0) + new_minutes.trade_count as trade_count,
        coalesce(existing.unknown_condition_prints, 0) + new_minutes.unknown_condition_prints as unknown_condition_prints,
        greatest(existing.last_loaded_at, new_minutes.last_loaded_at) as last_loaded_at,
        least(existing.open_key, new_minutes.open_key) as open_key,
        greatest(existing.close_key, new_minutes.close_key) as close_key
    from aggregated as new_minutes
    left join {{ this }} as existing
        on existing.symbol = new_minutes.symbol
        and existing.bar_start = new_minutes.bar_start

),

{% else %}

merged as (

    select * from aggregated

),

{% endif %}

with_calendar as (

    select
        merged.*,
        {{ tickhouse.symbol_calendar('reference.calendar', 'merged.symbol') }} as calendar
    from merged
    left join {{ ref('symbol_reference') }} as reference
        on reference.symbol = merged.symbol

),

with_session as (

    {{ tickhouse.with_trading_session('with_calendar', 'bar_start', ref('int_trading_calendars'), ref('int_trading_sessions')) }}

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'price_volume', 'vwap_volume', 'trade_count', 'unknown_condition_prints', 'last_loaded_at', 'calendar', 'trading_date', 'session'] %}

changed as (

    {% if rebuild_every_minute or merge_new_trades %}
    -- merged: every minute took in a trade, so its trade_count changed
    select * from with_session
    {% else %}
    {{ tickhouse.rows_changed_since_last_run('with_session', ['symbol', 'bar_start'], value_columns) }}
    {% endif %}

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
        vwap_volume,
        trade_count,
        unknown_condition_prints,
        calendar,
        trading_date,
        session,
        last_loaded_at,
        open_key,
        close_key,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_interval', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
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
-- Share basis (docs/interfaces/warehouse.md#candles-and-the-share-basis): raw.candles keeps
-- what was served. Finnhub serves daily candles (source in var split_adjusted_candle_sources)
-- split-adjusted to the share basis of the day they were fetched: share_basis_date, the date
-- in the symbol's exchange time zone of the candle's Kafka timestamp (published right after
-- the fetch). Every other candle (intraday, a file's) is as traded. The bar here is as
-- traded: prices × Π to/from, volume ÷ it, of the splits with an ex-date after the bar's
-- trading date and on or before share_basis_date (int_split_factors).
-- Incremental runs rebuild the (symbol, resolution, UTC day)s that a pending load touched,
-- and the daily candles of every symbol whose splits changed (int_split_restatements).

{%- set intervals = tickhouse.bar_intervals() %}
{#- named where read: PostgreSQL would materialize an import CTE read twice, all of raw.candles -#}
{%- set candles = ref('stg_tickhouse__candles') %}
{%- set adjusted_sources = var('split_adjusted_candle_sources') %}
{%- set adjusted_source_list -%}
    ({% for source in adjusted_sources %}'{{ source }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endset %}
{#- a table an earlier release built, before the share basis: rebuilt once, whole -#}
{%- set rebuild_all = tickhouse.built_before_columns(['share_basis_date', 'splits_updated_at']) %}

with

{% if is_incremental() and not rebuild_all %}

touched_days as (

    select distinct
        candles.symbol,
        candles.resolution,
        {{ tickhouse.utc_day_start('candles.candle_start') }} as day_start
    {{ tickhouse.from_pending_loads(candles, 'candles', 'raw.candles', 'candle_start') }}

),

-- a symbol whose list of splits changed since the last run: its split-adjusted candles change
-- their as-traded prices, or at least their splits_updated_at (so that they are written, and
-- the watermark passes the change)
restated_symbols as (

    select symbol
    from {{ ref('int_split_restatements') }}
    where updated_at > {{ tickhouse.watermark('updated_at') }}

),

candles_in_scope as (

    select candles.*
    from touched_days
    inner join {{ candles }} as candles
        on candles.symbol = touched_days.symbol
        and candles.resolution = touched_days.resolution
        and candles.candle_start >= touched_days.day_start
        and candles.candle_start < {{ dbt.dateadd('day', 1, 'touched_days.day_start') }}

    union

    -- every daily candle of the symbol, whatever its source: the latest load of a bar wins
    select candles.*
    from restated_symbols
    inner join {{ candles }} as candles
        on candles.symbol = restated_symbols.symbol
        and candles.resolution = 'D'

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
        {{ tickhouse.day_start('with_calendar.candle_date', tickhouse.calendar_timezone('calendars.timezone')) }} as day_start,
        case
            when with_calendar.candle_source in {{ adjusted_source_list }}
                then {{ tickhouse.local_date(
                    'coalesce(with_calendar.kafka_timestamp, with_calendar.loaded_at)',
                    tickhouse.calendar_timezone('calendars.timezone'),
                ) }}
        end as share_basis_date
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
        share_basis_date,
        {%- else -%}
        candle_start as bar_start,
        cast(null as date) as trading_date,
        cast(null as date) as share_basis_date,
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

-- the splits a split-adjusted candle has applied (ex-date after its trading date, on or before
-- its share basis date) are those counted at the trading date and not at the basis date
split_factors as (

    select
        latest.*,
        coalesce(at_bar.split_to_product, 1) * coalesce(at_basis.split_from_product, 1) as to_traded_multiplier,
        coalesce(at_bar.split_from_product, 1) * coalesce(at_basis.split_to_product, 1) as to_traded_divisor,
        restatements.updated_at as splits_updated_at
    from latest
    left join {{ ref('int_split_factors') }} as at_bar
        on latest.share_basis_date is not null
        and at_bar.symbol = latest.symbol
        and latest.trading_date >= at_bar.applies_from
        and latest.trading_date < at_bar.applies_before
    left join {{ ref('int_split_factors') }} as at_basis
        on latest.share_basis_date is not null
        and at_basis.symbol = latest.symbol
        and latest.share_basis_date >= at_basis.applies_from
        and latest.share_basis_date < at_basis.applies_before
    left join {{ ref('int_split_restatements') }} as restatements
        on latest.share_basis_date is not null
        and restatements.symbol = latest.symbol

),

as_traded as (

    select
        symbol,
        bar_interval,
        bar_start,
        trading_date,
        share_basis_date,
        {%- for price in ['open', 'high', 'low', 'close'] %}
        case
            when to_traded_multiplier = to_traded_divisor then {{ price }}
            else {{ price }} * to_traded_multiplier / to_traded_divisor
        end as {{ price }},
        {%- endfor %}
        case
            when to_traded_multiplier = to_traded_divisor then volume
            else volume * to_traded_divisor / to_traded_multiplier
        end as volume,
        candle_loaded_at,
        splits_updated_at
    from split_factors

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'candle_loaded_at', 'share_basis_date', 'splits_updated_at'] %}

changed as (

    {%- if rebuild_all %}
    select * from as_traded
    {%- else %}
    {{ tickhouse.rows_changed_since_last_run('as_traded', ['symbol', 'bar_interval', 'bar_start'], value_columns) }}
    {%- endif %}

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
        share_basis_date,
        splits_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

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

-- OHLCV bars per symbol for every interval of bar_intervals(), whatever the event time.
-- From trades: rolled up from the minute bars (a minute bar lies in exactly one bar of
-- every interval). From candles (`tickhouse backfill`): where no trade falls in a bar, the
-- candle of that interval's resolution makes it. The precedence rule: **trades win** — a bar
-- with at least one trade is built from the trades alone (exact VWAP and trade count of what
-- Tickhouse holds); candles fill the bars no trade reaches (history before the live feed, a
-- symbol added with its history). `bar_source` says which.
-- Incremental runs rebuild exactly the bars that contain a changed minute bar or candle bar,
-- and write only the bars whose values changed.

{%- set intervals = tickhouse.bar_intervals() %}

-- The inputs are named where they are read, not in import CTEs: PostgreSQL materializes a CTE
-- that is read twice, and the incremental path must reach only the rows that changed through
-- the indexes.
{%- set minute_bars = ref('int_trades_aggregated_to_minute_bars') %}
{%- set candle_bars = ref('int_candles_deduplicated_to_bars') %}

with

{% if is_incremental() %}

{%- set changed_since = tickhouse.watermark('source_updated_at') %}

changed_minute_bars as (

    select
        symbol,
        bar_start
    from {{ minute_bars }}
    where updated_at > {{ changed_since }}

),

bars_to_rebuild as (

    {% for interval in intervals %}
    select
        symbol,
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bar_start
    from changed_minute_bars
    union
    {% endfor %}
    select
        symbol,
        bar_interval,
        bar_start
    from {{ candle_bars }}
    where updated_at > {{ changed_since }}

),

-- with each bucket's end, so that the minute bars of a bucket are one index range
buckets_to_rebuild as (

    select
        bars_to_rebuild.*,
        case bars_to_rebuild.bar_interval
            {% for interval in intervals %}
            when '{{ interval.name }}' then {{ tickhouse.bar_bucket_end(interval, 'bars_to_rebuild.bar_start') }}
            {% endfor %}
        end as bar_end
    from bars_to_rebuild

),

minute_bars_in_scope as (

    select
        buckets_to_rebuild.bar_interval,
        buckets_to_rebuild.bar_start as bucket_start,
        minute_bars.*
    from buckets_to_rebuild
    inner join {{ minute_bars }} as minute_bars
        on minute_bars.symbol = buckets_to_rebuild.symbol
        and minute_bars.bar_start >= buckets_to_rebuild.bar_start
        and minute_bars.bar_start < buckets_to_rebuild.bar_end

),

candle_bars_in_scope as (

    select candle_bars.*
    from bars_to_rebuild
    inner join {{ candle_bars }} as candle_bars
        on candle_bars.symbol = bars_to_rebuild.symbol
        and candle_bars.bar_interval = bars_to_rebuild.bar_interval
        and candle_bars.bar_start = bars_to_rebuild.bar_start

),

{% else %}

minute_bars_in_scope as (

    {% for interval in intervals %}
    select
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bucket_start,
        minute_bars.*
    from {{ minute_bars }} as minute_bars
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

candle_bars_in_scope as (

    select * from {{ candle_bars }}

),

{% endif %}

trade_bars as (

    select
        symbol,
        bar_interval,
        bucket_start as bar_start,
        {{ tickhouse.first_by('open', [tickhouse.epoch_seconds('bar_start')]) }} as open,
        max(high) as high,
        min(low) as low,
        {{ tickhouse.last_by('close', [tickhouse.epoch_seconds('bar_start')]) }} as close,
        sum(volume) as volume,
        sum(price_volume) / nullif(sum(volume), 0) as vwap,
        sum(trade_count) as trade_count,
        'trades' as bar_source,
        max(updated_at) as source_updated_at

    from minute_bars_in_scope
    group by 1, 2, 3

),

-- a candle makes its bar only where no trade does
candle_only_bars as (

    select
        candle_bars_in_scope.symbol,
        candle_bars_in_scope.bar_interval,
        candle_bars_in_scope.bar_start,
        candle_bars_in_scope.open,
        candle_bars_in_scope.high,
        candle_bars_in_scope.low,
        candle_bars_in_scope.close,
        candle_bars_in_scope.volume,
        cast(null as {{ dbt.type_numeric() }}) as vwap,
        cast(null as {{ dbt.type_numeric() }}) as trade_count,
        'candles' as bar_source,
        candle_bars_in_scope.updated_at as source_updated_at
    from candle_bars_in_scope
    left join trade_bars
        on trade_bars.symbol = candle_bars_in_scope.symbol
        and trade_bars.bar_interval = candle_bars_in_scope.bar_interval
        and trade_bars.bar_start = candle_bars_in_scope.bar_start
    where trade_bars.symbol is null

),

rebuilt as (

    select * from trade_bars
    union all
    select * from candle_only_bars

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count', 'bar_source'] %}

changed as (

    {{ tickhouse.rows_changed_since_last_run('rebuilt', ['symbol', 'bar_interval', 'bar_start'], value_columns) }}

),

final as (

    select
        symbol,
        bar_interval,
        bar_start,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        trade_count,
        bar_source,
        source_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

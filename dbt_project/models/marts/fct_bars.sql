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

-- OHLCV bars per symbol for every interval of bar_intervals(), rolled up from minute bars
-- (a minute bar lies in exactly one bar of every interval). Incremental runs rebuild the
-- bars that contain a changed minute, within each interval's lookback of its newest bar,
-- and write only the bars whose values changed.

{%- set intervals = tickhouse.bar_intervals() %}

with

{% if is_incremental() %}

changed_minute_bars as (

    select
        symbol,
        bar_start
    from {{ ref('int_trades_aggregated_to_minute_bars') }}
    where updated_at > {{ tickhouse.watermark('source_updated_at') }}

),

-- one max per interval: each a backward probe of the (bar_interval, bar_start) index
newest_bars as (

    {% for interval in intervals %}
    select
        '{{ interval.name }}' as bar_interval,
        -- clamped at now: a (valid) trade dated up to a day ahead must not push the lookback
        -- window past the trades arriving late right now
        (
            select least(max(bar_start), {{ dbt.current_timestamp() }})
            from {{ this }}
            where bar_interval = '{{ interval.name }}'
        ) as newest_bar_start
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

affected_bars as (

    {% for interval in intervals %}
    select distinct
        symbol,
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bar_start,
        {{ interval.lookback_minutes }} as lookback_minutes
    from changed_minute_bars
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

bars_to_rebuild as (

    select
        affected_bars.symbol,
        affected_bars.bar_interval,
        affected_bars.bar_start
    from affected_bars
    left join newest_bars
        on newest_bars.bar_interval = affected_bars.bar_interval
    where newest_bars.newest_bar_start is null
       or affected_bars.bar_start >= {{ dbt.dateadd('minute', '-1 * affected_bars.lookback_minutes', 'newest_bars.newest_bar_start') }}

),

minute_bars as (

    select * from {{ ref('int_trades_aggregated_to_minute_bars') }}

),

minute_bars_in_scope as (

    select
        bars_to_rebuild.bar_interval,
        bars_to_rebuild.bar_start as bucket_start,
        minute_bars.*
    from bars_to_rebuild
    inner join minute_bars
        on minute_bars.symbol = bars_to_rebuild.symbol
        and minute_bars.bar_start >= bars_to_rebuild.bar_start
        and minute_bars.bar_start < case bars_to_rebuild.bar_interval
            {% for interval in intervals %}
            when '{{ interval.name }}' then {{ tickhouse.bar_bucket_end(interval, 'bars_to_rebuild.bar_start') }}
            {% endfor %}
        end

),

{% else %}

minute_bars as (

    select * from {{ ref('int_trades_aggregated_to_minute_bars') }}

),

minute_bars_in_scope as (

    {% for interval in intervals %}
    select
        '{{ interval.name }}' as bar_interval,
        {{ tickhouse.bar_bucket_start(interval, 'bar_start') }} as bucket_start,
        minute_bars.*
    from minute_bars
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

{% endif %}

aggregated as (

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
        max(updated_at) as source_updated_at

    from minute_bars_in_scope
    group by 1, 2, 3

),

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count'] %}

changed as (

    {% if is_incremental() %}
    select aggregated.*
    from aggregated
    left join {{ this }} as existing
        on existing.symbol = aggregated.symbol
        and existing.bar_interval = aggregated.bar_interval
        and existing.bar_start = aggregated.bar_start
    where existing.symbol is null
       or {{ tickhouse.rows_differ('aggregated', 'existing', value_columns) }}
    {% else %}
    select * from aggregated
    {% endif %}

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
        source_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

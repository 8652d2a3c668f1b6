{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_start'], 'unique': True},
            {'columns': ['updated_at']},
        ],
    )
}}

-- One-minute bars per symbol: the building block of every bar interval.
-- Incremental runs rebuild, per symbol, the minutes from the earliest one that received a
-- trade loaded since the last run, among trades whose event time is within the longest bar
-- lookback of the newest bar; a minute is written only when its values changed, so
-- `updated_at` marks real changes.

{%- set order_columns = ['event_ts_ms', 'kafka_partition', 'kafka_offset'] %}

with

{% if is_incremental() %}

{#- per symbol, the first minute with a trade loaded since the last run, read when the model
    is compiled so that the query below scans only that range -#}
{%- set rebuild_from = tickhouse.minute_bars_rebuild_from() %}

rebuild_from as (

    {% for symbol, bar_start, _ in rebuild_from %}
    select
        '{{ symbol | replace("'", "''") }}' as symbol,
        {{ tickhouse.timestamp_tz_literal(bar_start) }} as bar_start
    {% if not loop.last %}union all{% endif %}
    {% else %}
    select
        cast(null as {{ dbt.type_string() }}) as symbol,
        {{ tickhouse.timestamp_tz_literal('1900-01-01 00:00:00+00:00') }} as bar_start
    where 1 = 0
    {% endfor %}

),

trades as (

    select * from {{ ref('stg_tickhouse__trades') }}
    where event_time >= {{ tickhouse.timestamp_tz_literal(rebuild_from[0][2] if rebuild_from else '9999-12-31 00:00:00+00:00') }}

),

-- every minute of a symbol from its first changed one is rebuilt: an index range per symbol
trades_in_scope as (

    select trades.*
    from rebuild_from
    inner join trades
        on trades.symbol = rebuild_from.symbol
        and trades.event_time >= rebuild_from.bar_start

),

{% else %}

trades_in_scope as (

    select * from {{ ref('stg_tickhouse__trades') }}

),

{% endif %}

aggregated as (

    select
        symbol,
        {{ tickhouse.bar_bucket_start({'minutes': 1}, 'event_time') }} as bar_start,
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

{% set value_columns = ['open', 'high', 'low', 'close', 'volume', 'price_volume', 'trade_count', 'last_loaded_at'] %}

changed as (

    {% if is_incremental() %}
    select aggregated.*
    from aggregated
    left join {{ this }} as existing
        on existing.symbol = aggregated.symbol
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
        bar_start,
        open,
        high,
        low,
        close,
        volume,
        price_volume,
        trade_count,
        last_loaded_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

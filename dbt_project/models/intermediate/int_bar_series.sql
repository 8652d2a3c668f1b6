{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_interval'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_interval'], 'unique': True},
        ],
    )
}}

-- One row per bar series (symbol, bar_interval) of int_bars: its first and last bar, for the
-- pipeline views (what each symbol covers). Incremental: the series with a changed bar are
-- looked up again, each with two probes of int_bars' (symbol, bar_interval, bar_start) index.

with

{% if is_incremental() %}

changed_series as (

    select
        symbol,
        bar_interval,
        max(updated_at) as bars_updated_at
    from {{ ref('int_bars') }}
    where updated_at > {{ tickhouse.watermark('bars_updated_at') }}
    group by 1, 2

),

{% else %}

changed_series as (

    select
        symbol,
        bar_interval,
        max(updated_at) as bars_updated_at
    from {{ ref('int_bars') }}
    group by 1, 2

),

{% endif %}

-- int_bars is named in each probe itself (not through a CTE, which PostgreSQL would
-- materialize once and scan whole for every series)
series as (

    select
        changed_series.symbol,
        changed_series.bar_interval,
        (
            select min(bars.bar_start) from {{ ref('int_bars') }} as bars
            where bars.symbol = changed_series.symbol and bars.bar_interval = changed_series.bar_interval
        ) as first_bar_start,
        (
            select max(bars.bar_start) from {{ ref('int_bars') }} as bars
            where bars.symbol = changed_series.symbol and bars.bar_interval = changed_series.bar_interval
        ) as last_bar_start,
        changed_series.bars_updated_at
    from changed_series

),

final as (

    select
        symbol,
        bar_interval,
        first_bar_start,
        last_bar_start,
        bars_updated_at

    from series

)

select * from final

{{ config(materialized='view') }}

-- Per symbol, what the marts cover and whether they are behind raw (docs/interfaces/warehouse.md's "the marts
-- equal the raw tables after the next transform": rows loaded by the drain that no transform
-- has rebuilt from yet). For `tickhouse status`, the dashboard's pipeline panel and the
-- metrics exporter. A view: "behind" is as of the query.
-- It reads the raw tables and intermediate *tables*, never the staging views: dbt recreates a
-- view with DROP ... CASCADE, and a run that fails before reaching this view would leave it
-- dropped — exactly when operators need it.

with

series as (

    select * from {{ ref('int_bar_series') }}

),

coverage as (

    select
        symbol,
        min(first_bar_start) as first_bar_start,
        max(last_bar_start) as last_bar_start,
        max(case when bar_interval = '1d' then last_bar_start end) as last_daily_bar_start,
        max(bars_updated_at) as bars_updated_at

    from series
    group by symbol

),

load_stats as (

    select * from {{ source('tickhouse', 'load_stats') }}

),

transformed as (

    select * from {{ ref('int_raw_loads_transformed') }}

),

-- the loads with bar data that no transform has rebuilt from yet (the same bound on start
-- times as int_raw_loads_pending)
pending_loads as (

    select load_stats.*
    from load_stats
    where load_stats.loaded > 0
      and load_stats.target_table in ('raw.trades', 'raw.candles')
      and load_stats.started_at >= {{ dbt.dateadd(
          'hour',
          -1 * var('load_commit_margin_hours'),
          'coalesce((select max(started_at) from transformed), ' ~ tickhouse.timestamp_tz_literal('1900-01-01 00:00:00+00:00') ~ ')'
      ) }}
      and not exists (
          select 1 from transformed
          where transformed.run_id = load_stats.run_id
            and transformed.topic = load_stats.topic
      )

),

pending_rows as (

    select trades.symbol, trades.event_time
    from pending_loads
    inner join {{ source('tickhouse', 'trades') }} as trades
        on {{ tickhouse.loaded_by('trades', 'pending_loads') }}
    where pending_loads.target_table = 'raw.trades'

    union all

    select candles.symbol, candles.event_time
    from pending_loads
    inner join {{ source('tickhouse', 'candles') }} as candles
        on {{ tickhouse.loaded_by('candles', 'pending_loads') }}
    where pending_loads.target_table = 'raw.candles'

),

pending_per_symbol as (

    select
        symbol,
        count(*) as rows_pending,
        min(event_time) as oldest_pending_event_time

    from pending_rows
    group by symbol

),

final as (

    select
        coalesce(coverage.symbol, pending_per_symbol.symbol) as symbol,
        coverage.first_bar_start,
        coverage.last_bar_start,
        coverage.last_daily_bar_start,
        coverage.bars_updated_at as last_transformed_at,
        coalesce(pending_per_symbol.rows_pending, 0) as rows_pending,
        pending_per_symbol.oldest_pending_event_time,
        pending_per_symbol.symbol is not null as is_behind_raw

    from coverage
    full outer join pending_per_symbol
        on pending_per_symbol.symbol = coverage.symbol

)

select * from final

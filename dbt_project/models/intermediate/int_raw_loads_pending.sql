{{
    config(
        materialized='table',
    )
}}

-- The drain loads (one row per run and raw table, from raw.load_stats) that the models have
-- not been rebuilt from yet: the change set of this run, as data. Rebuilt at the start of
-- every run; int_raw_loads_transformed records the loads once the models that read them
-- succeeded, so a failed run leaves them pending for the next one.
-- A full refresh rebuilds everything: every load is pending then.

{%- set transformed = tickhouse.transformed_loads_relation() %}

with

load_stats as (

    select * from {{ ref('stg_tickhouse__load_stats') }}
    where loaded > 0
      and target_table in ('raw.trades', 'raw.candles', 'raw.alerts')

),

{% if transformed is not none and not flags.FULL_REFRESH %}

transformed as (

    select * from {{ transformed }}

),

-- Loads started before the newest transformed one, less a margin, were all committed and
-- seen by then: a drain transaction lasts minutes (DRAIN_MAX_SECONDS), never the margin.
-- The bound keeps this anti-join on recent loads however long the load history grows.
pending as (

    select load_stats.*
    from load_stats
    left join transformed
        on transformed.run_id = load_stats.run_id
        and transformed.topic = load_stats.topic
    where transformed.run_id is null
      and load_stats.started_at >= {{ tickhouse.newest_minus(transformed, 'started_at', var('load_commit_margin_hours') * 60) }}

),

{% else %}

pending as (

    select * from load_stats

),

{% endif %}

final as (

    select
        run_id,
        topic,
        target_table,
        started_at,
        loaded_at,
        min_event_time,
        max_event_time,
        loaded

    from pending

)

select * from final

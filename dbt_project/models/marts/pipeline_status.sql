{{ config(materialized='view') }}

-- Pipeline health per Kafka topic for BI users (the dashboard's pipeline panel): totals of the
-- drain, the lag its last run left and how fresh the newest loaded event is. A view, so the
-- freshness is as of the query. It reads raw.load_stats itself, not the staging view: dbt
-- recreates a view with DROP ... CASCADE, and a run that fails before reaching this view would
-- leave it dropped — exactly when operators need it.

with

load_stats as (

    select
        *,
        lag_after as consumer_lag_after
    from {{ source('tickhouse', 'load_stats') }}

),

totals_per_topic as (

    select
        topic,
        max(finished_at) as last_loaded_at,
        sum(loaded) as messages_loaded,
        sum(quarantined) as messages_quarantined,
        max(max_event_time) as latest_event_time

    from load_stats
    group by topic

),

latest_run_per_topic as (

    select
        topic,
        consumer_lag_after,
        row_number() over (partition by topic order by finished_at desc, run_id desc) as run_rank

    from load_stats

),

final as (

    select
        totals_per_topic.topic,
        totals_per_topic.last_loaded_at,
        totals_per_topic.messages_loaded,
        totals_per_topic.messages_quarantined,
        latest_run_per_topic.consumer_lag_after as consumer_lag,
        totals_per_topic.latest_event_time,
        cast(
            {{ dbt.datediff('totals_per_topic.latest_event_time', dbt.current_timestamp(), 'second') }}
            as double precision
        ) as freshness_seconds

    from totals_per_topic
    inner join latest_run_per_topic
        on latest_run_per_topic.topic = totals_per_topic.topic
        and latest_run_per_topic.run_rank = 1

)

select * from final

-- One row per drain run and topic, renamed for reporting.

with

source as (

    select * from {{ source('tickhouse', 'load_stats') }}

),

renamed as (

    select
        run_id,
        consumer_group,
        topic,
        target_table,
        started_at,
        finished_at,
        duration_ms,
        consumed,
        loaded,
        quarantined,
        lag_after as consumer_lag_after,
        min_event_time,
        max_event_time,
        -- the drain's transaction start: every row the run loaded carries the same loaded_at
        loaded_at

    from source

)

select * from renamed

{{
    config(
        materialized='incremental',
        unique_key=['run_id', 'topic'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['run_id', 'topic'], 'unique': True},
            {'columns': ['started_at']},
        ],
    )
}}

-- The drain loads the models have been rebuilt from: the pending loads of this run, recorded
-- after every model that reads raw succeeded (dbt skips this model when one of them, or one
-- of their tests, failed, and the loads stay pending).
-- depends_on: {{ ref('int_trades_aggregated_to_minute_bars') }}
-- depends_on: {{ ref('int_candles_deduplicated_to_bars') }}
-- depends_on: {{ ref('int_alerts') }}
-- depends_on: {{ ref('int_unknown_trade_conditions') }}

with

pending as (

    select * from {{ ref('int_raw_loads_pending') }}

),

final as (

    select
        run_id,
        topic,
        target_table,
        started_at,
        loaded_at,
        loaded,
        {{ tickhouse.run_started_at_literal() }} as transformed_at

    from pending

)

select * from final

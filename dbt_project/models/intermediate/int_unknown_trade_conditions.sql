{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_start', 'code'], 'unique': True},
            {'columns': ['code']},
        ],
    )
}}

-- depends_on: {{ ref('int_raw_loads_pending') }}
-- depends_on: {{ ref('trade_conditions') }}
-- The trade-condition codes the seed trade_conditions does not list, per symbol and minute:
-- how many prints carried each (the bars take them as regular trades), and when. What
-- marts.pipeline_unknown_conditions sums per code for `tickhouse status` and the metrics
-- exporter, so that the table can be extended.
-- Incremental by drain load: the trades of the pending loads name the minutes that received a
-- print with an unknown code, and each such minute is recounted from all its trades (one index
-- range each), so a load transformed twice (a run that failed after this model) counts once.
-- A run whose loads hold no unknown code reads only those loads. Prints left out of the bars
-- as implausible are left out here too, as in the minute bars' unknown_condition_prints.
-- A code added to the seed later keeps its rows here; the marts view shows only the codes the
-- seed does not list at query time.

{%- set one_minute = {'minutes': 1} %}

with

{% if is_incremental() %}

-- only the columns needed, of the trades with conditions: PostgreSQL materializes this CTE
new_trades as (

    select
        stg_trades.symbol,
        stg_trades.event_time,
        stg_trades.conditions,
        stg_trades.is_implausible_print
    {{ tickhouse.from_pending_loads(ref('stg_tickhouse__trades'), 'stg_trades', 'raw.trades') }}
    where stg_trades.conditions is not null

),

new_unknown_codes as {{ tickhouse.materialized_cte() }} (

    {{ tickhouse.unknown_condition_codes('new_trades') }}

),

touched_minutes as (

    select distinct
        new_trades.symbol,
        {{ tickhouse.bar_bucket_start(one_minute, 'new_trades.event_time') }} as bar_start
    from new_trades
    inner join new_unknown_codes
        on new_unknown_codes.condition_key = {{ tickhouse.trade_condition_key('new_trades.conditions') }}
    where not new_trades.is_implausible_print

),

trades_in_scope as (

    select stg_trades.*
    from touched_minutes
    inner join {{ ref('stg_tickhouse__trades') }} as stg_trades
        on stg_trades.symbol = touched_minutes.symbol
        and stg_trades.event_time >= touched_minutes.bar_start
        and stg_trades.event_time < {{ tickhouse.bar_bucket_end(one_minute, 'touched_minutes.bar_start') }}
    where stg_trades.conditions is not null

),

{% else %}

trades_in_scope as (

    select * from {{ ref('stg_tickhouse__trades') }}
    where conditions is not null

),

{% endif %}

unknown_codes as (

    {{ tickhouse.unknown_condition_codes('trades_in_scope') }}

),

unknown_prints as (

    select
        trades_in_scope.symbol,
        {{ tickhouse.bar_bucket_start(one_minute, 'trades_in_scope.event_time') }} as bar_start,
        unknown_codes.code,
        trades_in_scope.event_time,
        trades_in_scope.loaded_at
    from trades_in_scope
    inner join unknown_codes
        on unknown_codes.condition_key = {{ tickhouse.trade_condition_key('trades_in_scope.conditions') }}
    where not trades_in_scope.is_implausible_print

),

final as (

    select
        symbol,
        bar_start,
        code,
        count(*) as prints,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time,
        max(loaded_at) as last_loaded_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from unknown_prints
    group by
        symbol,
        bar_start,
        code

)

select * from final

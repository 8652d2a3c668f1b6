{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'bar_interval', 'bar_start'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'bar_interval', 'bar_start'], 'unique': True},
            {'columns': ['bars_updated_at']},
            {'columns': ['updated_at']},
        ],
    )
}}

-- TA-Lib's SMA(20/50/200), EMA(12/26), MACD(12, 26, 9), RSI(14) and BBANDS(20, 2, 2) over
-- the split-adjusted close of int_bars (int_bars_split_adjusted.adj_close), per symbol and
-- interval in bar order, NULL where TA-Lib has no value yet. A bar whose close is NULL (only
-- prints that do not update the last price) is not part of the series: it has no row here. The recursions are folded in double precision with TA-Lib's order of
-- operations (macros/technicals/create_technicals_functions.sql).
-- Incremental runs start every changed series at its earliest changed bar, from the state
-- stored on the bar before it (ta_state), so they give the numbers a full refresh gives. A
-- symbol whose splits changed since the last run (int_split_restatements) has all its series
-- recomputed from their first bar; the other symbols only from their changed bars.

-- depends_on: {{ ref('int_bars') }}, {{ ref('int_split_restatements') }}

with

{% if is_incremental() %}

changed_bars as (

    select
        symbol,
        bar_interval,
        min(bar_start) as recompute_from
    from {{ ref('int_bars') }}
    where updated_at > {{ tickhouse.watermark('bars_updated_at') }}
    group by 1, 2

),

restated_symbols as (

    select symbol
    from {{ ref('int_split_restatements') }}
    where updated_at > {{ tickhouse.watermark('updated_at') }}

),

restated_series as (

    select
        bars.symbol,
        bars.bar_interval,
        min(bars.bar_start) as recompute_from
    from restated_symbols
    inner join {{ ref('int_bars') }} as bars
        on bars.symbol = restated_symbols.symbol
    group by 1, 2

),

changed_series as (

    select
        symbol,
        bar_interval,
        min(recompute_from) as recompute_from
    from (
        select * from changed_bars
        union all
        select * from restated_series
    ) as changes
    group by 1, 2

),

series_rows as (

    {{ tickhouse.technicals_rows_to_recompute('changed_series') }}

),

{% else %}

bars as (

    select * from {{ ref('int_bars_split_adjusted') }}
    where adj_close is not null

),

series_rows as (

    select
        symbol,
        bar_interval,
        bar_start,
        cast(adj_close as {{ dbt.type_float() }}) as close,
        updated_at as bars_updated_at,
        true as is_recomputed,
        {{ tickhouse.empty_technicals_state() }} as seed_state
    from bars

),

{% endif %}

windowed as (

    select
        symbol,
        bar_interval,
        bar_start,
        close,
        bars_updated_at,
        is_recomputed,
        seed_state,
        lag(close, 19) over (partition by symbol, bar_interval order by bar_start) as close_lag_19,
        lag(close, 49) over (partition by symbol, bar_interval order by bar_start) as close_lag_49,
        lag(close, 199) over (partition by symbol, bar_interval order by bar_start) as close_lag_199,
        -- population standard deviation, as TA-Lib's BBANDS uses
        stddev_pop(close) over (
            partition by symbol, bar_interval
            order by bar_start
            rows between 19 preceding and current row
        ) as stddev_20

    from series_rows

),

recomputed as (

    select * from windowed
    where is_recomputed

),

folded as (

    {{ tickhouse.fold_technicals('recomputed') }}

),

final as (

    select
        symbol,
        bar_interval,
        bar_start,
        close,
        sma_20,
        sma_50,
        sma_200,
        ema_12,
        ema_26,
        macd,
        macd_signal,
        macd_hist,
        rsi_14,
        case when bar_number >= 20 then sma_20 + (stddev_20 * 2.0) end as bb_upper,
        case when bar_number >= 20 then sma_20 end as bb_middle,
        case when bar_number >= 20 then sma_20 - (stddev_20 * 2.0) end as bb_lower,
        bar_number,
        ta_state,
        bars_updated_at,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from folded

)

select * from final

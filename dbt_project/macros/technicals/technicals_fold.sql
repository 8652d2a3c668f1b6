{#
    The per-series pieces of int_technicals that differ by warehouse.

    technicals_rows_to_recompute(changed_series): for each series (symbol, bar_interval) in
    `changed_series` (with its `recompute_from`), the bars with a close (split-adjusted, as
    `close`) from recompute_from on
    (is_recomputed = true, carrying the stored indicator state of the bar before, as
    `seed_state`) plus the up to 199 bars before it (is_recomputed = false) that the SMA
    windows, lags and Bollinger standard deviation need.

    fold_technicals(rows): folds the step function over `rows` in bar order per series,
    starting from `seed_state`, and adds the columns bar_number, ta_state, sma_20, sma_50,
    sma_200, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14.
#}

{% macro technicals_rows_to_recompute(changed_series) %}
    {{ return(adapter.dispatch('technicals_rows_to_recompute')(changed_series)) }}
{% endmacro %}

{% macro fold_technicals(rows) %}
    {{ return(adapter.dispatch('fold_technicals')(rows)) }}
{% endmacro %}

{% macro postgres__technicals_rows_to_recompute(changed_series) %}
    -- LATERAL ... ORDER BY ... LIMIT walks the (symbol, bar_interval, bar_start) indexes
    -- backwards, so the cost does not grow with the history of a series.
    select
        history.symbol,
        history.bar_interval,
        history.bar_start,
        cast(history.adj_close as double precision) as close,
        history.updated_at as bars_updated_at,
        false as is_recomputed,
        cast(null as double precision[]) as seed_state
    from {{ changed_series }}
    cross join lateral (
        select bars.*
        from {{ ref('int_bars_split_adjusted') }} as bars
        where bars.symbol = {{ changed_series }}.symbol
          and bars.bar_interval = {{ changed_series }}.bar_interval
          and bars.bar_start < {{ changed_series }}.recompute_from
          and bars.adj_close is not null
        order by bars.bar_start desc
        limit 199
    ) as history

    union all

    select
        bars.symbol,
        bars.bar_interval,
        bars.bar_start,
        cast(bars.adj_close as double precision) as close,
        bars.updated_at as bars_updated_at,
        true as is_recomputed,
        prior.ta_state as seed_state
    from {{ changed_series }}
    inner join {{ ref('int_bars_split_adjusted') }} as bars
        on bars.symbol = {{ changed_series }}.symbol
        and bars.bar_interval = {{ changed_series }}.bar_interval
        and bars.bar_start >= {{ changed_series }}.recompute_from
        and bars.adj_close is not null
    left join lateral (
        select technicals.ta_state
        from {{ this }} as technicals
        where technicals.symbol = {{ changed_series }}.symbol
          and technicals.bar_interval = {{ changed_series }}.bar_interval
          and technicals.bar_start < {{ changed_series }}.recompute_from
        order by technicals.bar_start desc
        limit 1
    ) as prior on true
{% endmacro %}

{% macro postgres__fold_technicals(rows) %}
    {%- set schema = technicals_function_schema() %}
    select
        folded.*,
        cast(folded.ta[1] as bigint) as bar_number,
        folded.ta[1:11] as ta_state,
        folded.ta[12] as sma_20,
        folded.ta[13] as sma_50,
        folded.ta[14] as sma_200,
        folded.ta[15] as ema_12,
        folded.ta[16] as ema_26,
        folded.ta[17] as macd,
        folded.ta[18] as macd_signal,
        folded.ta[19] as macd_hist,
        folded.ta[20] as rsi_14
    from (
        select
            {{ rows }}.*,
            {{ schema }}.ta_indicators(
                {{ rows }}.seed_state,
                {{ rows }}.close,
                {{ rows }}.close_lag_19,
                {{ rows }}.close_lag_49,
                {{ rows }}.close_lag_199
            ) over (
                partition by {{ rows }}.symbol, {{ rows }}.bar_interval
                order by {{ rows }}.bar_start
                rows between unbounded preceding and current row
            ) as ta
        from {{ rows }}
    ) as folded
{% endmacro %}

{% macro snowflake__technicals_rows_to_recompute(changed_series) %}
    -- Snowflake has no indexes to walk: rank the earlier bars and keep the last 199.
    with earlier as (
        select
            bars.symbol,
            bars.bar_interval,
            bars.bar_start,
            cast(bars.adj_close as double) as close,
            bars.updated_at as bars_updated_at
        from {{ changed_series }}
        inner join {{ ref('int_bars_split_adjusted') }} as bars
            on bars.symbol = {{ changed_series }}.symbol
            and bars.bar_interval = {{ changed_series }}.bar_interval
            and bars.bar_start < {{ changed_series }}.recompute_from
            and bars.adj_close is not null
        qualify row_number() over (
            partition by bars.symbol, bars.bar_interval order by bars.bar_start desc
        ) <= 199
    ),

    prior_state as (
        select
            technicals.symbol,
            technicals.bar_interval,
            technicals.ta_state
        from {{ changed_series }}
        inner join {{ this }} as technicals
            on technicals.symbol = {{ changed_series }}.symbol
            and technicals.bar_interval = {{ changed_series }}.bar_interval
            and technicals.bar_start < {{ changed_series }}.recompute_from
        qualify row_number() over (
            partition by technicals.symbol, technicals.bar_interval order by technicals.bar_start desc
        ) = 1
    )

    select
        symbol,
        bar_interval,
        bar_start,
        close,
        bars_updated_at,
        false as is_recomputed,
        cast(null as array) as seed_state
    from earlier

    union all

    select
        bars.symbol,
        bars.bar_interval,
        bars.bar_start,
        cast(bars.adj_close as double) as close,
        bars.updated_at as bars_updated_at,
        true as is_recomputed,
        prior_state.ta_state as seed_state
    from {{ changed_series }}
    inner join {{ ref('int_bars_split_adjusted') }} as bars
        on bars.symbol = {{ changed_series }}.symbol
        and bars.bar_interval = {{ changed_series }}.bar_interval
        and bars.bar_start >= {{ changed_series }}.recompute_from
        and bars.adj_close is not null
    left join prior_state
        on prior_state.symbol = {{ changed_series }}.symbol
        and prior_state.bar_interval = {{ changed_series }}.bar_interval
{% endmacro %}

{% macro snowflake__fold_technicals(rows) %}
    {%- set schema = technicals_function_schema() %}
    -- A partitioned JavaScript table function sees each series' rows in bar order; its
    -- output rows are joined back to the input on the series key and bar_start.
    select
        {{ rows }}.*,
        folded.bar_number,
        folded.ta_state,
        folded.sma_20,
        folded.sma_50,
        folded.sma_200,
        folded.ema_12,
        folded.ema_26,
        folded.macd,
        folded.macd_signal,
        folded.macd_hist,
        folded.rsi_14
    from {{ rows }}
    inner join (
        select folded_rows.*
        from {{ rows }} as input_rows,
            table({{ schema }}.ta_indicators(
                input_rows.symbol,
                input_rows.bar_interval,
                input_rows.bar_start,
                input_rows.seed_state,
                input_rows.close,
                input_rows.close_lag_19,
                input_rows.close_lag_49,
                input_rows.close_lag_199
            ) over (
                partition by input_rows.symbol, input_rows.bar_interval
                order by input_rows.bar_start
            )) as folded_rows
    ) as folded
        on folded.symbol = {{ rows }}.symbol
        and folded.bar_interval = {{ rows }}.bar_interval
        and folded.bar_start = {{ rows }}.bar_start
{% endmacro %}

{# A NULL indicator state of the warehouse's array type (a series that starts fresh). #}
{% macro empty_technicals_state() %}
    {{ return(adapter.dispatch('empty_technicals_state')()) }}
{% endmacro %}

{% macro postgres__empty_technicals_state() -%}
    cast(null as double precision[])
{%- endmacro %}

{% macro snowflake__empty_technicals_state() -%}
    cast(null as array)
{%- endmacro %}

{#
    For each series (symbol, bar_interval) in `series_cte`: the bar_number of the last
    int_technicals row before its `before_column`, 0 if none (used by a data test).
#}
{% macro last_bar_number_before(series_cte, before_column) %}
    {{ return(adapter.dispatch('last_bar_number_before')(series_cte, before_column)) }}
{% endmacro %}

{# PostgreSQL: one backward index probe per series. #}
{% macro postgres__last_bar_number_before(series_cte, before_column) %}
    select
        {{ series_cte }}.symbol,
        {{ series_cte }}.bar_interval,
        coalesce((
            select technicals.bar_number
            from {{ ref('int_technicals') }} as technicals
            where technicals.symbol = {{ series_cte }}.symbol
              and technicals.bar_interval = {{ series_cte }}.bar_interval
              and technicals.bar_start < {{ series_cte }}.{{ before_column }}
            order by technicals.bar_start desc
            limit 1
        ), 0) as last_bar_number
    from {{ series_cte }}
{% endmacro %}

{% macro default__last_bar_number_before(series_cte, before_column) %}
    select
        {{ series_cte }}.symbol,
        {{ series_cte }}.bar_interval,
        coalesce(max(technicals.bar_number), 0) as last_bar_number
    from {{ series_cte }}
    left join {{ ref('int_technicals') }} as technicals
        on technicals.symbol = {{ series_cte }}.symbol
        and technicals.bar_interval = {{ series_cte }}.bar_interval
        and technicals.bar_start < {{ series_cte }}.{{ before_column }}
    group by 1, 2
{% endmacro %}

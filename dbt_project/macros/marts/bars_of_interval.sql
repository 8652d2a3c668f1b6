{#
    The body of a one-interval view of the bars (fct_bars_1m, ..., fct_bars_1d): the columns of
    fct_bars except bar_interval, so that a BI user who sums volume per day cannot count every
    trade five times (once per interval) by forgetting a filter.
#}
{% macro bars_of_interval(interval_name) %}

with bars as (

    select * from {{ ref('int_bars_split_adjusted') }}
    where bar_interval = '{{ interval_name }}'

),

final as (

    select
        symbol,
        bar_start,
        trading_date,
        session,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        trade_count,
        bar_source,
        adj_open,
        adj_high,
        adj_low,
        adj_close,
        adj_volume,
        adj_total_return_factor

    from bars

)

select * from final

{% endmacro %}

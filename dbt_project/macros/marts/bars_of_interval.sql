{#
    The body of a one-interval view of the bars (fct_bars_1m, ..., fct_bars_1d): the columns of
    fct_bars (macros/marts/bar_columns.sql) except bar_interval, so that a BI user who sums volume
    per day cannot count every trade five times (once per interval) by forgetting a filter.
#}
{% macro bars_of_interval(interval_name) %}

with bars as (

    select * from {{ ref('int_bars_split_adjusted') }}
    where bar_interval = '{{ interval_name }}'

),

final as (

    select
        {{ tickhouse.bar_columns(with_interval=false) | join(',\n        ') }}

    from bars

)

select * from final

{% endmacro %}

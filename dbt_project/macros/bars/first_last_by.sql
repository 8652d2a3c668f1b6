{#
    `value` of the row that sorts first (first_by) or last (last_by) by `order_columns`,
    within a group. Used for a bar's open and close: the first / last trade by event time,
    ties broken by Kafka partition and offset.
#}
{% macro first_by(value, order_columns) %}
    {{ return(adapter.dispatch('first_by')(value, order_columns)) }}
{% endmacro %}

{% macro last_by(value, order_columns) %}
    {{ return(adapter.dispatch('last_by')(value, order_columns)) }}
{% endmacro %}

{# One pass, no sort: min/max over an array compares element by element. #}
{% macro postgres__first_by(value, order_columns) -%}
    (min(array[{% for column in order_columns %}cast({{ column }} as numeric), {% endfor %}cast({{ value }} as numeric)]))[{{ order_columns | length + 1 }}]
{%- endmacro %}

{% macro postgres__last_by(value, order_columns) -%}
    (max(array[{% for column in order_columns %}cast({{ column }} as numeric), {% endfor %}cast({{ value }} as numeric)]))[{{ order_columns | length + 1 }}]
{%- endmacro %}

{% macro snowflake__first_by(value, order_columns) -%}
    cast(get(array_agg({{ value }}) within group (order by {{ order_columns | join(', ') }}), 0) as number(38, 12))
{%- endmacro %}

{% macro snowflake__last_by(value, order_columns) -%}
    cast(get(array_agg({{ value }}) within group (order by {% for column in order_columns %}{{ column }} desc{% if not loop.last %}, {% endif %}{% endfor %}), 0) as number(38, 12))
{%- endmacro %}

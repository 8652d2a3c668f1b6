{#
    `value` of the row that sorts first (first_by) or last (last_by) by `order_columns`,
    within a group. Used for a bar's open and close: the first / last trade by event time,
    ties broken by Kafka partition and offset. With `where`, only the rows where that
    condition holds count (NULL when none does): a bar's open/close come from the trades that
    update the last price, a roll-up's from the bars that have a price.
#}
{% macro first_by(value, order_columns, where=none) %}
    {{ return(adapter.dispatch('first_by')(value, order_columns, where)) }}
{% endmacro %}

{% macro last_by(value, order_columns, where=none) %}
    {{ return(adapter.dispatch('last_by')(value, order_columns, where)) }}
{% endmacro %}

{# One pass, no sort: min/max over an array compares element by element. #}
{% macro postgres__first_by(value, order_columns, where=none) -%}
    (min(array[{% for column in order_columns %}cast({{ column }} as numeric), {% endfor %}cast({{ value }} as numeric)]){% if where %} filter (where {{ where }}){% endif %})[{{ order_columns | length + 1 }}]
{%- endmacro %}

{% macro postgres__last_by(value, order_columns, where=none) -%}
    (max(array[{% for column in order_columns %}cast({{ column }} as numeric), {% endfor %}cast({{ value }} as numeric)]){% if where %} filter (where {{ where }}){% endif %})[{{ order_columns | length + 1 }}]
{%- endmacro %}

{# Snowflake's array_agg leaves NULL values out, so a filtered-out row is a NULL value. #}
{% macro snowflake__first_by(value, order_columns, where=none) -%}
    cast(get(array_agg({% if where %}case when {{ where }} then {{ value }} end{% else %}{{ value }}{% endif %}) within group (order by {{ order_columns | join(', ') }}), 0) as number(38, 12))
{%- endmacro %}

{% macro snowflake__last_by(value, order_columns, where=none) -%}
    cast(get(array_agg({% if where %}case when {{ where }} then {{ value }} end{% else %}{{ value }}{% endif %}) within group (order by {% for column in order_columns %}{{ column }} desc{% if not loop.last %}, {% endif %}{% endfor %}), 0) as number(38, 12))
{%- endmacro %}

{#
    The sort key and value that first_by / last_by pick from, kept with a one-minute bar
    (open_key, close_key) so that the bar can take in new trades without reading its old ones:
    the first of two groups' keys is the first of all their rows (least / greatest of the
    two), and its last element is the value. NULL when no row qualifies. PostgreSQL only; on
    other warehouses the minute bars are rebuilt from all their trades and the keys are NULL.
#}
{% macro first_by_key(value, order_columns, where=none) %}
    {{ return(adapter.dispatch('first_by_key')(value, order_columns, where, 'min')) }}
{% endmacro %}

{% macro last_by_key(value, order_columns, where=none) %}
    {{ return(adapter.dispatch('first_by_key')(value, order_columns, where, 'max')) }}
{% endmacro %}

{% macro postgres__first_by_key(value, order_columns, where, aggregate) -%}
    {{ aggregate }}(array[{% for column in order_columns %}cast({{ column }} as numeric), {% endfor %}cast({{ value }} as numeric)]){% if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{% macro default__first_by_key(value, order_columns, where, aggregate) -%}
    cast(null as {{ dbt.type_string() }})
{%- endmacro %}

{# The value of a key made by first_by_key / last_by_key over `order_columns`. #}
{% macro value_of_key(key, order_columns) -%}
    ({{ key }})[{{ order_columns | length + 1 }}]
{%- endmacro %}

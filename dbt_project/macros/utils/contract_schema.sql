{#
    dbt's check of an enforced contract, without its warning about `numeric` columns that
    declare no precision or scale. Tickhouse's prices and volumes are unconstrained numerics on
    purpose: they keep exactly the digits that were published, and no rounding happens (the
    marts are views; nothing is cast to the declared type). Otherwise dbt's own macro.
#}
{% macro postgres__get_empty_schema_sql(columns) %}
    {%- set col_err = [] -%}
    select
    {% for i in columns %}
      {%- set col = columns[i] -%}
      {%- if col['data_type'] is not defined -%}
        {%- do col_err.append(col['name']) -%}
      {%- endif -%}
      {% set col_name = adapter.quote(col['name']) if col.get('quote') else col['name'] %}
      {{ cast('null', col['data_type']) }} as {{ col_name }}{{ ", " if not loop.last }}
    {%- endfor -%}
    {%- if (col_err | length) > 0 -%}
      {{ exceptions.column_type_missing(column_names=col_err) }}
    {%- endif -%}
{% endmacro %}

{# True when any of `columns` differs (NULL-safe) between the rows aliased `left` and `right`. #}
{% macro rows_differ(left, right, columns) -%}
    (
    {%- for column in columns %}
        {{ left }}.{{ column }} is distinct from {{ right }}.{{ column }}{% if not loop.last %} or{% endif %}
    {%- endfor %}
    )
{%- endmacro %}

{# True when any of `columns` differs (NULL-safe) between the rows aliased `left` and `right`. #}
{% macro rows_differ(left, right, columns) -%}
    (
    {%- for column in columns %}
        {{ left }}.{{ column }} is distinct from {{ right }}.{{ column }}{% if not loop.last %} or{% endif %}
    {%- endfor %}
    )
{%- endmacro %}

{#
    The rows of CTE `rows` that an incremental model must write: those whose key is not in the
    model yet or whose `value_columns` differ from the stored row (all rows when the model is
    built from scratch). Writing only these keeps `updated_at` a mark of real change, which
    the next model downstream builds its own change set from.
#}
{% macro rows_changed_since_last_run(rows, key_columns, value_columns) %}
    {% if is_incremental() %}
    select {{ rows }}.*
    from {{ rows }}
    left join {{ this }} as existing
        on {% for column in key_columns %}existing.{{ column }} = {{ rows }}.{{ column }}{% if not loop.last %}
        and {% endif %}{% endfor %}
    where existing.{{ key_columns[0] }} is null
       or {{ tickhouse.rows_differ(rows, 'existing', value_columns) }}
    {% else %}
    select * from {{ rows }}
    {% endif %}
{% endmacro %}

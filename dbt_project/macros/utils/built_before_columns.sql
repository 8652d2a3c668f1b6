{#
    Whether the incremental model's existing table lacks any of `column_names`: a table that
    an earlier release built, before those columns (and the rules that fill them) existed.
    A model rebuilds every row once when it does, instead of its change set, with
    on_schema_change='append_new_columns' adding the columns: the warehouse of the earlier
    release keeps working after an upgrade, with the numbers a full refresh gives.
    False when the model is built from scratch, and while dbt parses.
#}
{% macro built_before_columns(column_names) %}
    {%- if not execute or not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set present = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {%- for name in column_names -%}
        {%- if name | lower not in present -%}
            {{ return(true) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{% endmacro %}

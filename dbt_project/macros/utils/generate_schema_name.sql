{#
    Models land in exactly the schema they are configured for (`staging`, `intermediate`,
    `marts`), not `<target schema>_<custom schema>`: the warehouse roles and grants are set
    up for those three names (tickhouse/sql/001_schemas_and_grants.sql).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

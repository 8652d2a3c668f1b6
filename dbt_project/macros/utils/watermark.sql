{#
    The newest value of `column` already in the incremental model itself, minus `minutes`,
    as a literal: read with a query when the model is compiled, so that the planner sees a
    constant (partition pruning, index ranges, row estimates) instead of a subquery. A
    timestamp far in the past when the model is empty. The columns it is used on are dbt run
    start times (updated_at and the upstream updated_at a row was built from), never event
    times.
#}
{% macro watermark(column, minutes=0) -%}
    {{- tickhouse.newest_minus(this, column, minutes) -}}
{%- endmacro %}

{#
    The newest value of timestamp `column` in `relation`, minus `minutes`, as a literal read
    when the model is compiled (like watermark(), for a relation other than the model itself);
    a timestamp far in the past when `relation` is empty.
#}
{% macro newest_minus(relation, column, minutes=0) -%}
    {%- set value = none -%}
    {%- if execute -%}
        {%- set query -%}
            select {{ dbt.cast(dbt.dateadd('minute', -1 * minutes, 'max(' ~ column ~ ')'), api.Column.translate_type('string')) }}
            from {{ relation }}
        {%- endset -%}
        {%- set value = run_query(query).columns[0].values()[0] -%}
    {%- endif -%}
    {{- tickhouse.timestamp_tz_literal(value if value is not none else '1900-01-01 00:00:00+00:00') -}}
{%- endmacro %}

{#
    Post-hook of every table model (dbt_project.yml): fresh planner statistics for what the
    next models and tests join, so that PostgreSQL picks index lookups for a few rows and hash
    joins for many. ANALYZE samples a fixed number of rows: cheap on any table size. Views
    have nothing to analyze.
#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch('analyze_relation', 'tickhouse')(relation)) }}
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    {%- if config.get('materialized') in ('table', 'incremental') -%}
    analyze {{ relation }}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
    select 1
{%- endmacro %}

{# A timestamp-with-time-zone literal. #}
{% macro timestamp_tz_literal(value) -%}
    {{ return(adapter.dispatch('timestamp_tz_literal')(value)) }}
{%- endmacro %}

{% macro default__timestamp_tz_literal(value) -%}
    cast('{{ value }}' as timestamp with time zone)
{%- endmacro %}

{% macro snowflake__timestamp_tz_literal(value) -%}
    cast('{{ value }}' as timestamp_tz)
{%- endmacro %}

{# The time this dbt invocation started: the `updated_at` of the rows it writes. #}
{% macro run_started_at_literal() -%}
    {{ tickhouse.timestamp_tz_literal(run_started_at.isoformat()) }}
{%- endmacro %}

{#
    `materialized` on PostgreSQL, for a CTE of a few rows (the distinct condition sets of the new
    trades) joined to many: the planner never sees a new load in raw's statistics, estimates one
    row, and would otherwise run the inlined aggregation again for every trade (n squared).
    Nothing elsewhere.
#}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte', 'tickhouse')()) }}
{%- endmacro %}

{% macro postgres__materialized_cte() -%}
    materialized
{%- endmacro %}

{% macro default__materialized_cte() -%}
{%- endmacro %}

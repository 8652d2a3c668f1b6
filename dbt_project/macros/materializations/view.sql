{#
    dbt's view materialization for PostgreSQL, replacing a view in place (relations_in_place.sql):
    `create or replace view` keeps every view over it and its grants; BI queries wait for the
    commit, never see the view missing. dbt's default renames the old view away and drops it with
    `cascade`, which drops the views over it too. When the new columns are not the old ones plus
    columns at the end (what `create or replace view` accepts), the view is dropped and created
    again in the same transaction, if no view reads it; otherwise the model fails (naming them).
    Snowflake keeps its own materialization (it already creates or replaces).
#}
{%- materialization view, adapter='postgres' -%}

    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set probe_relation = make_intermediate_relation(target_relation) -%}
    {%- set preexisting_probe_relation = load_cached_relation(probe_relation) -%}
    {% set grant_config = config.get('grants') %}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ drop_relation_if_exists(preexisting_probe_relation) }}

    -- `BEGIN` happens here:
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% if existing_relation is none %}
        {% call statement('main') -%}
            {{ get_create_view_as_sql(target_relation, sql) }}
        {%- endcall %}
    {% else %}
        {% set replace_in_place = false %}
        {% set changed = [] %}
        {% if existing_relation.is_view %}
            {#- the new query's columns, from a view of it nobody else sees (dropped before the commit) -#}
            {% call statement('probe_columns') -%}
                create view {{ probe_relation }} as (
                    {{ sql }}
                );
            {%- endcall %}
            {% set changed = tickhouse.columns_mismatch(existing_relation, probe_relation, true) %}
            {% do adapter.drop_relation(probe_relation) %}
            {% set replace_in_place = not changed %}
        {% endif %}
        {% if replace_in_place %}
            {% call statement('main') -%}
                {{ get_replace_view_sql(target_relation, sql) }}
            {%- endcall %}
        {% else %}
            {% set dependents = tickhouse.dependent_views(existing_relation) %}
            {% if dependents %}
                {% do tickhouse.refuse_to_drop_dependents(existing_relation, dependents, changed or ['(all: it is a ' ~ existing_relation.type ~ ')']) %}
            {% endif %}
            {% do adapter.drop_relation(existing_relation) %}
            {% call statement('main') -%}
                {{ get_create_view_as_sql(target_relation, sql) }}
            {%- endcall %}
        {% endif %}
    {% endif %}

    {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
    {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}

    {% do persist_docs(target_relation, model) %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}

    {{ adapter.commit() }}

    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}

{%- endmaterialization -%}

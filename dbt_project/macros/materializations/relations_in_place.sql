{#
    Helpers of the PostgreSQL materializations in this folder: a relation a BI user reads is never
    dropped, because `drop ... cascade` takes every view over it along (until that view's own
    model runs again). A view is replaced with `create or replace view`, a table with views over
    it is refreshed in place (delete + insert in the build's transaction: readers see the old rows
    until the commit, and no lock of theirs conflicts). A change PostgreSQL cannot make in place
    (a column renamed, dropped or retyped under a dependent view) fails the model with a message
    naming the views, instead of dropping them.
#}

{% macro dependent_views(relation) %}
    {#- the views (and materialized views) whose definitions read `relation`, as schema.name -#}
    {% set query %}
        select distinct dependent_schema.nspname || '.' || dependent.relname as name
        from pg_catalog.pg_depend as dependency
        inner join pg_catalog.pg_rewrite as rule_
            on rule_.oid = dependency.objid
        inner join pg_catalog.pg_class as dependent
            on dependent.oid = rule_.ev_class
        inner join pg_catalog.pg_namespace as dependent_schema
            on dependent_schema.oid = dependent.relnamespace
        where dependency.classid = 'pg_catalog.pg_rewrite'::regclass
            and dependency.refclassid = 'pg_catalog.pg_class'::regclass
            and dependency.refobjid = to_regclass({{ dbt.string_literal(relation.include(database=False).render()) }})
            and dependent.oid <> dependency.refobjid
        order by 1
    {% endset %}
    {% if not execute %}{{ return([]) }}{% endif %}
    {{ return(run_query(query).columns[0].values() | list) }}
{% endmacro %}


{% macro columns_mismatch(old_relation, new_relation, allow_appended) %}
    {#- the columns of old_relation that new_relation does not have at the same position with the
        same name, type and collation (what `create or replace view` and an insert by position
        need); unless allow_appended, columns new_relation has beyond old_relation's count too -#}
    {% set query %}
        with old_columns as (
            select attnum, attname, atttypid, atttypmod, attcollation
            from pg_catalog.pg_attribute
            where attrelid = {{ dbt.string_literal(old_relation.include(database=False).render()) }}::regclass
                and attnum > 0 and not attisdropped
        ),
        new_columns as (
            select attnum, attname, atttypid, atttypmod, attcollation
            from pg_catalog.pg_attribute
            where attrelid = {{ dbt.string_literal(new_relation.include(database=False).render()) }}::regclass
                and attnum > 0 and not attisdropped
        )
        select coalesce(old_columns.attname, new_columns.attname)::text as name
        from old_columns
        full outer join new_columns
            on new_columns.attnum = old_columns.attnum
        where new_columns.attnum is null
            {% if not allow_appended %}or old_columns.attnum is null{% endif %}
            or new_columns.attname <> old_columns.attname
            or new_columns.atttypid <> old_columns.atttypid
            or new_columns.atttypmod <> old_columns.atttypmod
            or new_columns.attcollation <> old_columns.attcollation
        order by coalesce(old_columns.attnum, new_columns.attnum)
    {% endset %}
    {% if not execute %}{{ return([]) }}{% endif %}
    {{ return(run_query(query).columns[0].values() | list) }}
{% endmacro %}


{% macro refuse_to_drop_dependents(relation, dependents, changed_columns) %}
    {{ exceptions.raise_compiler_error(
        "The columns " ~ (changed_columns | join(', ')) ~ " of " ~ relation.render()
        ~ " changed in a way PostgreSQL cannot make in place, and the views "
        ~ (dependents | join(', ')) ~ " read it. Replacing it would drop them (BI queries would fail"
        ~ " until they are rebuilt), so the build stops here: drop those views, or run a build that"
        ~ " rebuilds them, in a maintenance window."
    ) }}
{% endmacro %}


{% macro refresh_table_in_place(target_relation, rebuilt_relation) %}
    {#- inside the build's transaction: target_relation gets the rows of rebuilt_relation (same
        columns), which is dropped; readers of target_relation keep reading the old rows until
        the commit -#}
    {% set columns = adapter.get_columns_in_relation(rebuilt_relation) %}
    {% set column_list = columns | map(attribute='quoted') | join(', ') %}
    {% call statement('refresh_in_place') %}
        delete from {{ target_relation }};
        insert into {{ target_relation }} ({{ column_list }})
        select {{ column_list }} from {{ rebuilt_relation }};
        drop table {{ rebuilt_relation }};
    {% endcall %}
    {% do adapter.cache_dropped(rebuilt_relation) %}
{% endmacro %}


{% macro swap_in_rebuilt_table(target_relation, intermediate_relation, backup_relation, to_drop) %}
    {#- the end of a table build (a table model, an incremental model's full refresh): the rebuilt
        rows in intermediate_relation replace target_relation's. Without views over it: dbt's
        rename swap (the backup is dropped after the commit). With views over it: in place. -#}
    {% set dependents = tickhouse.dependent_views(target_relation) %}
    {% if dependents %}
        {% set changed = tickhouse.columns_mismatch(target_relation, intermediate_relation, false) %}
        {% if changed %}
            {% do tickhouse.refuse_to_drop_dependents(target_relation, dependents, changed) %}
        {% endif %}
        {% do tickhouse.refresh_table_in_place(target_relation, intermediate_relation) %}
    {% else %}
        {% do adapter.rename_relation(target_relation, backup_relation) %}
        {% do adapter.rename_relation(intermediate_relation, target_relation) %}
        {% do to_drop.append(backup_relation) %}
    {% endif %}
{% endmacro %}

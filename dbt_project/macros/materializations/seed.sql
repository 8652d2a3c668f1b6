{#
    How `dbt seed` empties a seed's table on PostgreSQL before loading the CSV. dbt's default drops
    it with `cascade` on --full-refresh (with every view that reads it) and truncates it otherwise
    (an ACCESS EXCLUSIVE lock, which queues behind every BI query and blocks the ones after it).
    A seed that views read is emptied with `delete` instead, in the load's transaction: readers
    see the old rows until the commit. A seed no view reads keeps dbt's behaviour. A CSV whose
    columns changed under such views fails the load (the insert names the new columns).
#}
{% macro postgres__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
    {% if tickhouse.dependent_views(old_relation) %}
        {#- executed here, like dbt's drop and truncate; the returned SQL is what the log shows -#}
        {% set sql = "delete from " ~ old_relation.render() %}
        {% call statement('empty_seed_table') %}{{ sql }}{% endcall %}
        {{ return(sql) }}
    {% endif %}
    {{ return(dbt.default__reset_csv_table(model, full_refresh, old_relation, agate_table)) }}
{% endmacro %}

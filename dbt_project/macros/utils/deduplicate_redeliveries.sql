{#
    The rows of `relation_cte` (a CTE over a raw table) minus Kafka redeliveries: a message
    delivered twice has the same coordinates (topic, partition, offset) and event time; the
    first load (smallest loaded_at) is kept.

    PostgreSQL: the raw tables are UNIQUE on exactly those columns, so a redelivery can never
    be stored twice and there is nothing to drop. The rows pass through untouched, which keeps
    the view transparent to the planner: a filter or join on (symbol, event_time) reaches the
    raw tables' indexes and partitions, which the incremental models rely on (a window
    partitioned by the coordinates would stop a symbol predicate from being pushed down).

    Snowflake declares but does not enforce unique keys (the loader inserts only what is
    absent), so a window drops any duplicate there; a filter on event_time is still pushed
    below it.
#}
{% macro deduplicate_redeliveries(relation_cte) %}
    {{ return(adapter.dispatch('deduplicate_redeliveries', 'tickhouse')(relation_cte)) }}
{% endmacro %}

{% macro postgres__deduplicate_redeliveries(relation_cte) %}
    select
        {{ relation_cte }}.*,
        cast(1 as bigint) as delivery_number
    from {{ relation_cte }}
{% endmacro %}

{% macro default__deduplicate_redeliveries(relation_cte) %}
    select *
    from (
        select
            {{ relation_cte }}.*,
            row_number() over (
                partition by kafka_topic, kafka_partition, kafka_offset, event_time
                order by loaded_at
            ) as delivery_number
        from {{ relation_cte }}
    ) as numbered
    where delivery_number = 1
{% endmacro %}

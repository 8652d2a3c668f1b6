{#
    The rows of `relation_cte` (a CTE over a raw table) minus Kafka redeliveries: a message
    delivered twice has the same coordinates (topic, partition, offset) and event time; the
    first load (smallest loaded_at) is kept.

    A window partitioned by those columns, not a self-join: a filter on event_time (the raw
    tables' partition key) or the coordinates is pushed below the window, so a query on
    recent events reads only their day partitions, however many days raw holds.
#}
{% macro deduplicate_redeliveries(relation_cte) %}
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

{#
    The rows of `relation_cte` (a CTE over raw trades) minus producer resends: a trade the
    Tickhouse producer sent again after a crash is a second Kafka message (its own coordinates)
    with the same producer identity (producer_id, producer_seq), symbol and event time. Of each
    identity the row with the lowest Kafka coordinates (topic, partition, offset) is kept: the
    first copy, whichever load it arrived in, so an incremental run keeps what a full refresh
    keeps. Rows without an identity (other producers) all stay: two genuine trades with the same
    symbol, price, size and millisecond are two trades.

    PostgreSQL: an anti-join (a probe per row with an identity) against `raw_relation` itself (not the CTE, which PostgreSQL would
    then materialize), served by the partial index trades_producer_identity (migration 015); the
    symbol and event_time equalities prune it to the one day partition. Filters on the view
    (symbol, event_time) still reach the raw tables' indexes, as the incremental models need.

    Elsewhere (Snowflake): a window over the identity; symbol and event_time are among its
    partition keys, so a filter on them is still pushed below it.
#}
{% macro deduplicate_producer_resends(relation_cte, raw_relation) %}
    {{ return(adapter.dispatch('deduplicate_producer_resends', 'tickhouse')(relation_cte, raw_relation)) }}
{% endmacro %}

{% macro postgres__deduplicate_producer_resends(relation_cte, raw_relation) %}
    -- `is null or not exists`: a per-row probe of the partial index, only for rows with an
    -- identity; a plain anti-join let PostgreSQL sort every row in scope and walk the whole
    -- identity index of their partitions, a cost that grew with the month's history
    select {{ relation_cte }}.*
    from {{ relation_cte }}
    where {{ relation_cte }}.producer_id is null
    or not exists (
        select 1
        from {{ raw_relation }} as earlier_copy
        where earlier_copy.producer_id = {{ relation_cte }}.producer_id
            and earlier_copy.producer_seq = {{ relation_cte }}.producer_seq
            and earlier_copy.symbol = {{ relation_cte }}.symbol
            and earlier_copy.event_time = {{ relation_cte }}.event_time
            and (earlier_copy.kafka_topic, earlier_copy.kafka_partition, earlier_copy.kafka_offset)
                < ({{ relation_cte }}.kafka_topic, {{ relation_cte }}.kafka_partition, {{ relation_cte }}.kafka_offset)
    )
{% endmacro %}

{% macro default__deduplicate_producer_resends(relation_cte, raw_relation) %}
    select *
    from (
        select
            {{ relation_cte }}.*,
            case
                when producer_id is null then 1
                else row_number() over (
                    partition by producer_id, producer_seq, symbol, event_time
                    order by kafka_topic, kafka_partition, kafka_offset
                )
            end as copy_number
        from {{ relation_cte }}
    ) as numbered_copies
    where copy_number = 1
{% endmacro %}

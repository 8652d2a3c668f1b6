{#
    How the incremental models find what changed in raw: by drain load, not by a time window.

    Every drain run writes its rows and one raw.load_stats row per topic in one transaction;
    all of them carry the same `loaded_at` (the transaction's start time). A load is *pending*
    until the models that read its raw table have been rebuilt from it; then it is recorded in
    int_raw_loads_transformed. So a load is found whatever the event time of its rows (history,
    a backfill, one late feed) and however the drain transactions commit relative to each other.
#}

{#
    int_raw_loads_transformed, read by int_raw_loads_pending without a ref(): it is the
    feedback edge of the loop "pending = loaded - transformed" (a ref would be a cycle). None
    before the first run, when every load is pending.
#}
{% macro transformed_loads_relation() %}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(
        database=target.database,
        schema=generate_schema_name('intermediate', none) | trim,
        identifier='int_raw_loads_transformed',
    )) }}
{% endmacro %}

{#
    The rows of raw-backed relation `rows` loaded by the pending loads in `pending` (a
    relation or CTE with the columns of int_raw_loads_pending; `event_column` is the staging
    name of raw's event_time), as a join condition: the
    load's transaction time, and its event-time span, which lets PostgreSQL prune the raw
    table's partitions for each load.
#}
{% macro loaded_by(rows, pending, event_column='event_time') -%}
    {{ rows }}.loaded_at = {{ pending }}.loaded_at
    and {{ rows }}.{{ event_column }} >= {{ pending }}.min_event_time
    and {{ rows }}.{{ event_column }} <= {{ pending }}.max_event_time
{%- endmacro %}

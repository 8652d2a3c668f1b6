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

    With `target_table` (the pending loads are int_raw_loads_pending's of that raw table), the
    span of all of them is added as literals, read when the model is compiled (like
    watermark()): a join condition alone reaches the raw table only after the staging view's
    anti-join (producer resends) has read and sorted every row of the partitions in range, so
    a hot run's cost grew with the month's history; the literals filter the scan itself
    (partition pruning, the BRIN on loaded_at) and the run reads the new rows only.
#}
{% macro loaded_by(rows, pending, event_column='event_time', target_table=none) -%}
    {{ rows }}.loaded_at = {{ pending }}.loaded_at
    and {{ rows }}.{{ event_column }} >= {{ pending }}.min_event_time
    and {{ rows }}.{{ event_column }} <= {{ pending }}.max_event_time
    {%- if target_table is not none %}
    and {{ tickhouse.pending_loads_span(rows, target_table, event_column) }}
    {%- endif %}
{%- endmacro %}

{#
    The `from` clause of an incremental model that reads what the drain brought since its last
    run: the pending loads of raw table `target_table` (int_raw_loads_pending), joined to the rows
    of `relation` (a staging model or CTE over that table, aliased `rows`) they loaded. The one
    place that says which pending loads go with which raw table's rows.
#}
{% macro from_pending_loads(relation, rows, target_table, event_column='event_time') -%}
    from {{ ref('int_raw_loads_pending') }} as pending_loads
    inner join {{ relation }} as {{ rows }}
        on pending_loads.target_table = '{{ target_table }}'
        and {{ tickhouse.loaded_by(rows, 'pending_loads', event_column, target_table=target_table) }}
{%- endmacro %}

{#
    The loaded_at and event-time span of the pending loads of `target_table`
    (int_raw_loads_pending) as a condition on `rows` with literals; `1 = 0` when none is
    pending; `1 = 1` at parse time, and when int_raw_loads_pending does not exist yet (`dbt
    compile` on a warehouse never built: the join condition alone says which rows are loaded by
    the pending loads, the literals only narrow the scan).
#}
{% macro pending_loads_span(rows, target_table, event_column='event_time') -%}
    {%- if not execute or load_relation(ref('int_raw_loads_pending')) is none -%}
        1 = 1
    {%- else -%}
        {%- set text = api.Column.translate_type('string') -%}
        {%- set query -%}
            select
                {{ dbt.cast('min(loaded_at)', text) }},
                {{ dbt.cast('max(loaded_at)', text) }},
                {{ dbt.cast('min(min_event_time)', text) }},
                {{ dbt.cast('max(max_event_time)', text) }}
            from {{ ref('int_raw_loads_pending') }}
            where target_table = '{{ target_table }}'
        {%- endset -%}
        {%- set span = run_query(query).rows[0] -%}
        {%- if span[0] is none -%}
            1 = 0
        {%- else -%}
            ({{ rows }}.loaded_at >= {{ tickhouse.timestamp_tz_literal(span[0]) }}
            and {{ rows }}.loaded_at <= {{ tickhouse.timestamp_tz_literal(span[1]) }}
            and {{ rows }}.{{ event_column }} >= {{ tickhouse.timestamp_tz_literal(span[2]) }}
            and {{ rows }}.{{ event_column }} <= {{ tickhouse.timestamp_tz_literal(span[3]) }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

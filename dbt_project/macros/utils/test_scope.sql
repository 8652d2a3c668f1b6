{#
    Data tests on tables that grow with the history check the rows the last run wrote (or,
    for the staging views over raw, the rows loaded recently), so that `dbt build` costs what
    the new data costs; the rows of earlier runs were checked when they were written. After
    a full refresh the last run wrote every row, so every row is checked.
    `--vars '{test_all_rows: true}'` checks everything on any run.

    Test configs name the scope with a placeholder in `where:`, replaced here when the test
    runs (YAML config is rendered at parse time, when the run is not known yet):
      __written_by_last_run__  updated_at >= the newest updated_at of the tested model
      __recently_loaded__      for a staging view over a raw table: recently loaded rows of
                               recent events (see recently_loaded)
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__written_by_last_run__' in where -%}
            {%- set where = where | replace('__written_by_last_run__', tickhouse.written_by_last_run(relation)) -%}
        {%- endif -%}
        {%- if '__recently_loaded__' in where -%}
            {%- set where = where | replace('__recently_loaded__', tickhouse.recently_loaded(relation)) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) as dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

{#
    Rows of `relation` written by its last run: updated_at at or after its newest updated_at,
    read first and used as a constant (an `updated_at` index then serves a range).
#}
{% macro written_by_last_run(relation, column='updated_at') -%}
    {%- if var('test_all_rows', false) -%}
        1 = 1
    {%- else -%}
        {%- set newest = none -%}
        {%- if execute -%}
            {%- set query -%}
                select {{ dbt.cast('max(' ~ column ~ ')', api.Column.translate_type('string')) }} from {{ relation }}
            {%- endset -%}
            {%- set newest = run_query(query).columns[0].values()[0] -%}
        {%- endif -%}
        {%- if newest is none -%}
            1 = 1
        {%- else -%}
            {{ column }} >= {{ tickhouse.timestamp_tz_literal(newest) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#
    Rows of staging view `relation` (stg_tickhouse__<table>) whose event time and load time
    are both within `recent_load_window_minutes` before this run: live data. Both bounds are
    constants, so the view's filter on event time reaches only the rows of the raw partition
    that hold them (the view's redelivery window cannot push a load-time filter down). Older
    rows, e.g. a replay of historical data, are checked with test_all_rows.
    Candles are history by nature: their recent loads are checked whatever their event time
    (the candles table is small next to trades).
#}
{% macro recently_loaded(relation) -%}
    {%- if var('test_all_rows', false) -%}
        1 = 1
    {%- else -%}
        {%- set table = relation.identifier.split('__')[-1] -%}
        {%- set event_column = {'trades': 'event_time', 'quotes': 'quoted_at', 'alerts': 'trade_time', 'candles': none}[table] -%}
        {%- if event_column is not none -%}
        {{ event_column }} >= {{ dbt.dateadd('minute', -1 * (var('recent_load_window_minutes') | int), tickhouse.run_started_at_literal()) }}
        and
        {% endif -%}
        loaded_at > {{ dbt.dateadd('minute', -1 * (var('recent_load_window_minutes') | int), tickhouse.run_started_at_literal()) }}
    {%- endif -%}
{%- endmacro %}

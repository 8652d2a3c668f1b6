{#
    Whether this run of int_trades_aggregated_to_minute_bars may merge the trades of the
    pending loads into the stored minute bars (open_key / close_key, sums, high and low),
    reading only the new trades, instead of rebuilding each touched minute from all of its
    trades. Exact only if no pending load was merged already: true when the last run that wrote
    minute bars also recorded its loads as transformed (int_raw_loads_transformed), i.e. no run
    failed between the two; otherwise this run rebuilds the touched minutes from raw, which
    puts the bars right again. PostgreSQL only (elsewhere: false). Read when the model is
    compiled. Never in transform_marts' build (its environment names the build lock,
    macros/utils/build_lock.sql): there each hot model takes the lock only after it compiled, so
    a hot run may merge and record the very loads this build read as pending (its own
    int_raw_loads_pending, built before that hot run) between this check and the write, and
    merging them again would count them twice. Rebuilding the touched minutes from raw is
    exact whatever ran in between.
#}
{% macro minute_bars_merge_new_trades(minute_bars=none) %}
    {{ return(adapter.dispatch('minute_bars_merge_new_trades', 'tickhouse')(minute_bars)) }}
{% endmacro %}

{% macro default__minute_bars_merge_new_trades(minute_bars) %}
    {{ return(false) }}
{% endmacro %}

{% macro postgres__minute_bars_merge_new_trades(minute_bars) %}
    {%- if not execute or flags.FULL_REFRESH or env_var('TICKHOUSE_BUILD_LOCK_KEY', '') -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set transformed = tickhouse.transformed_loads_relation() -%}
    {%- set bars = adapter.get_relation(
        database=target.database,
        schema=generate_schema_name('intermediate', none) | trim,
        identifier='int_trades_aggregated_to_minute_bars',
    ) -%}
    {%- if transformed is none or bars is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(bars) | map(attribute='name') | map('lower') | list -%}
    {%- for name in ['open_key', 'close_key', 'vwap_volume', 'unknown_condition_prints'] -%}
        {%- if name not in columns -%}
            {{ return(false) }}
        {%- endif -%}
    {%- endfor -%}
    {%- set query -%}
        select
            (select max(updated_at) from {{ bars }})
            <= coalesce((
                -- the loads a run records started within the margin of the newest one
                -- (int_raw_loads_pending): an index range, not every load ever
                select max(transformed_at) from {{ transformed }}
                where started_at >= {{ tickhouse.newest_minus(transformed, 'started_at', var('load_commit_margin_hours') * 60) }}
            ), '-infinity'::timestamptz)
            or (select max(updated_at) from {{ bars }}) is null
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0] == true) }}
{% endmacro %}

{#
    Pre-hook of int_trades_aggregated_to_minute_bars: a table an earlier release built gets the
    sort-key columns with their array type (on_schema_change would add them as dbt reads
    PostgreSQL's information schema, `ARRAY`, which is no type); that run rebuilds every
    minute (built_before_columns) and fills them.
#}
{% macro add_minute_bar_key_columns() %}
    {{ return(adapter.dispatch('add_minute_bar_key_columns', 'tickhouse')()) }}
{% endmacro %}

{% macro default__add_minute_bar_key_columns() -%}
    select 1
{%- endmacro %}

{% macro postgres__add_minute_bar_key_columns() -%}
    {#- only when they are missing: ALTER TABLE takes an exclusive lock until the run commits -#}
    {%- if execute and is_incremental() and not flags.FULL_REFRESH
        and tickhouse.built_before_columns(['open_key', 'close_key']) -%}
    alter table {{ this }}
        add column if not exists open_key numeric[],
        add column if not exists close_key numeric[]
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

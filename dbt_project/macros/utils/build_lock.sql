{#
    One build at a time, model by model (the pre-hook of every intermediate model,
    dbt_project.yml). A build whose environment names the lock (TICKHOUSE_BUILD_LOCK_KEY: the key
    of transform.dbt_runner's advisory lock; TICKHOUSE_BUILD_LOCK_MODELS: the hot models of
    transform.hot, which the ingest DAG's hot runs write, comma-separated; both set by
    `transform.hot.build_lock_environment`) takes it in each of those models' own transaction,
    before anything else, and holds it until the model commits or fails. So the full build of
    `transform_marts` and a hot run (which holds the same lock for its whole run) never write
    the same table at once, and the rest of the build (every other model, every test) never
    waits for the hot runs, nor they for it. The wait is as long as a hot run takes, not
    `lock_timeout` (that bounds the waits for BI queries' locks, transform/dbt_runner.py).
    Without them (a hot run, `tickhouse transform`: they hold the lock themselves) it is nothing.
    Environment variables rather than dbt vars: a hook is rendered when the model runs, so they
    are not part of the parse state, and the build goes on from the parse `make up` left (other
    `--vars` would make dbt parse the whole project again).
#}
{% macro build_lock() -%}
    {%- set key = env_var('TICKHOUSE_BUILD_LOCK_KEY', '') -%}
    {%- if key and model.name in env_var('TICKHOUSE_BUILD_LOCK_MODELS', '').split(',') -%}
        {{- adapter.dispatch('build_lock', 'tickhouse')(key | int) -}}
    {%- endif -%}
{%- endmacro %}

{# no advisory locks: elsewhere the build does not share tables with hot runs #}
{% macro default__build_lock(key) -%}
{%- endmacro %}

{% macro postgres__build_lock(key) -%}
    do $build_lock$
    declare
        for_readers text := current_setting('lock_timeout');
    begin
        perform set_config('lock_timeout', '0', true);
        perform pg_advisory_xact_lock({{ key }});
        perform set_config('lock_timeout', for_readers, true);
    end
    $build_lock$
{%- endmacro %}

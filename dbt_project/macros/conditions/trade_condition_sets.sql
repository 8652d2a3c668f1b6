{#
    Eligibility of every distinct set of trade conditions in `trades` (a relation with a
    `conditions` array), by the consolidated rules of the seed trade_conditions: one row per
    `condition_key` (trade_condition_key of the set) with `updates_last`, `updates_high_low`,
    `updates_volume` and `unknown_codes`.
    A set qualifies for a field only if every code in it does; a code the table does not list
    counts as regular (it qualifies for every field) and is counted in `unknown_codes`; an
    empty or missing set is a regular trade.
    Sets are few (a feed uses some dozens), so the trades join this small result on one text
    key instead of looking up each trade's codes.
#}
{% macro trade_condition_sets(trades) %}
    {{ return(adapter.dispatch('trade_condition_sets', 'tickhouse')(trades)) }}
{% endmacro %}

{# The join key of a trade's condition set, '' for none: its codes joined by ',' (PostgreSQL),
   the array as JSON text (Snowflake). #}
{% macro trade_condition_key(conditions) -%}
    {{ return(adapter.dispatch('trade_condition_key', 'tickhouse')(conditions)) }}
{%- endmacro %}

{% macro postgres__trade_condition_key(conditions) -%}
    coalesce(array_to_string({{ conditions }}, ','), '')
{%- endmacro %}

{% macro snowflake__trade_condition_key(conditions) -%}
    coalesce(to_varchar({{ conditions }}), '')
{%- endmacro %}

{% macro postgres__trade_condition_sets(trades) %}
    select
        sets.condition_key,
        coalesce(bool_and(coalesce(eligibility.updates_open_close, true)), true) as updates_last,
        coalesce(bool_and(coalesce(eligibility.updates_high_low, true)), true) as updates_high_low,
        coalesce(bool_and(coalesce(eligibility.updates_volume, true)), true) as updates_volume,
        count(codes.code) - count(eligibility.code) as unknown_codes
    from (select distinct {{ tickhouse.trade_condition_key('conditions') }} as condition_key from {{ trades }}) as sets
    left join lateral unnest(string_to_array(nullif(sets.condition_key, ''), ',')) as codes (code) on true
    left join {{ ref('trade_conditions') }} as eligibility
        on eligibility.code = codes.code
    group by sets.condition_key
{% endmacro %}

{# A set's codes are flattened without OUTER and joined back: a set without codes keeps its
   row through the left join (fakesnow, the Snowflake test double, drops FLATTEN's OUTER rows). #}
{% macro snowflake__trade_condition_sets(trades) %}
    {%- set sets %}(select distinct {{ tickhouse.trade_condition_key('conditions') }} as condition_key from {{ trades }}){% endset %}
    select
        sets.condition_key,
        coalesce(booland_agg(coalesce(eligibility.updates_open_close, true)), true) as updates_last,
        coalesce(booland_agg(coalesce(eligibility.updates_high_low, true)), true) as updates_high_low,
        coalesce(booland_agg(coalesce(eligibility.updates_volume, true)), true) as updates_volume,
        count(set_codes.code) - count(eligibility.code) as unknown_codes
    from {{ sets }} as sets
    left join (
        select
            keyed.condition_key,
            codes.value::string as code
        from {{ sets }} as keyed,
            lateral flatten(input => try_parse_json(nullif(keyed.condition_key, ''))) as codes
    ) as set_codes
        on set_codes.condition_key = sets.condition_key
    left join {{ ref('trade_conditions') }} as eligibility
        on eligibility.code = set_codes.code
    group by sets.condition_key
{% endmacro %}

{#
    The codes the seed trade_conditions does not list, per distinct set of trade conditions in
    `trades` (a relation with a `conditions` array): one row per (`condition_key`, `code`), a
    code once per set however often the set repeats it. Sets without such a code have no row.
#}
{% macro unknown_condition_codes(trades) %}
    {{ return(adapter.dispatch('unknown_condition_codes', 'tickhouse')(trades)) }}
{% endmacro %}

{% macro postgres__unknown_condition_codes(trades) %}
    select distinct
        sets.condition_key,
        codes.code
    from (select distinct {{ tickhouse.trade_condition_key('conditions') }} as condition_key from {{ trades }}) as sets
    cross join lateral unnest(string_to_array(nullif(sets.condition_key, ''), ',')) as codes (code)
    left join {{ ref('trade_conditions') }} as eligibility
        on eligibility.code = codes.code
    where eligibility.code is null
{% endmacro %}

{% macro snowflake__unknown_condition_codes(trades) %}
    select distinct
        set_codes.condition_key,
        set_codes.code
    from (
        select
            keyed.condition_key,
            codes.value::string as code
        from (select distinct {{ tickhouse.trade_condition_key('conditions') }} as condition_key from {{ trades }}) as keyed,
            lateral flatten(input => try_parse_json(nullif(keyed.condition_key, ''))) as codes
    ) as set_codes
    left join {{ ref('trade_conditions') }} as eligibility
        on eligibility.code = set_codes.code
    where eligibility.code is null
{% endmacro %}

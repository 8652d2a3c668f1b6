{# Epoch milliseconds (bigint) -> timestamp with time zone, exactly (no float rounding). #}
{% macro epoch_ms_to_timestamp(column) %}
    {{ return(adapter.dispatch('epoch_ms_to_timestamp')(column)) }}
{% endmacro %}

{% macro default__epoch_ms_to_timestamp(column) -%}
    (timestamp with time zone '1970-01-01 00:00:00+00' + {{ column }} * interval '1 millisecond')
{%- endmacro %}

{% macro snowflake__epoch_ms_to_timestamp(column) -%}
    to_timestamp_tz({{ column }}, 3)
{%- endmacro %}

{# Seconds since 1970-01-01 UTC of timestamp `column`, as a number (for ordering). #}
{% macro epoch_seconds(column) %}
    {{ return(adapter.dispatch('epoch_seconds')(column)) }}
{% endmacro %}

{% macro default__epoch_seconds(column) -%}
    extract(epoch from {{ column }})
{%- endmacro %}

{% macro snowflake__epoch_seconds(column) -%}
    date_part(epoch_second, {{ column }})
{%- endmacro %}

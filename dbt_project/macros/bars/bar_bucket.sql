{# Start of the intraday bar of `interval` (an entry of bar_intervals() with minutes) that holds
   timestamp `column`: buckets aligned to the hour in UTC. Daily bars are trading sessions
   (macros/calendars). #}
{% macro bar_bucket_start(interval, column) %}
    {{ return(adapter.dispatch('bar_bucket_start')(interval, column)) }}
{% endmacro %}

{# End (exclusive) of the bar of `interval` that starts at `column`. #}
{% macro bar_bucket_end(interval, column) %}
    {{ return(adapter.dispatch('bar_bucket_end')(interval, column)) }}
{% endmacro %}

{% macro postgres__bar_bucket_start(interval, column) -%}
    date_bin(interval '{{ interval.minutes }} minutes', {{ column }}, timestamp with time zone '2000-01-01 00:00:00+00')
{%- endmacro %}

{% macro postgres__bar_bucket_end(interval, column) -%}
    ({{ column }} + interval '{{ interval.minutes }} minutes')
{%- endmacro %}

{# Snowflake: bucket in wall-clock TIMESTAMP_NTZ (UTC, or the trading time zone for days),
   then back to a TIMESTAMP_TZ in UTC, independent of the session's TIMEZONE. #}
{% macro snowflake__utc_ntz_to_timestamp_tz(ntz) -%}
    timestamp_tz_from_parts(
        year({{ ntz }}), month({{ ntz }}), day({{ ntz }}),
        hour({{ ntz }}), minute({{ ntz }}), second({{ ntz }}), 0, 'UTC'
    )
{%- endmacro %}

{% macro snowflake__bar_bucket_start(interval, column) -%}
    {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
        "time_slice(convert_timezone('UTC', " ~ column ~ ")::timestamp_ntz, " ~ interval.minutes ~ ", 'MINUTE', 'START')"
    ) }}
{%- endmacro %}

{% macro snowflake__bar_bucket_end(interval, column) -%}
    dateadd('minute', {{ interval.minutes }}, {{ column }})
{%- endmacro %}

{# The UTC date of timestamp `column`, as a timestamp (00:00 UTC). #}
{% macro utc_day_start(column) %}
    {{ return(adapter.dispatch('utc_day_start')(column)) }}
{% endmacro %}

{% macro postgres__utc_day_start(column) -%}
    date_bin(interval '1 day', {{ column }}, timestamp with time zone '2000-01-01 00:00:00+00')
{%- endmacro %}

{% macro snowflake__utc_day_start(column) -%}
    {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
        "date_trunc('day', convert_timezone('UTC', " ~ column ~ ")::timestamp_ntz)"
    ) }}
{%- endmacro %}

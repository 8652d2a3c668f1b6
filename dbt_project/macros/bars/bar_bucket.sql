{# Start of the bar of `interval` (an entry of bar_intervals()) that holds timestamp `column`. #}
{% macro bar_bucket_start(interval, column) %}
    {{ return(adapter.dispatch('bar_bucket_start')(interval, column)) }}
{% endmacro %}

{# End (exclusive) of the bar of `interval` that starts at `column`. #}
{% macro bar_bucket_end(interval, column) %}
    {{ return(adapter.dispatch('bar_bucket_end')(interval, column)) }}
{% endmacro %}

{% macro postgres__bar_bucket_start(interval, column) -%}
    {%- if interval.minutes is none -%}
        (date_trunc('day', {{ column }} at time zone '{{ var("trading_timezone") }}') at time zone '{{ var("trading_timezone") }}')
    {%- else -%}
        date_bin(interval '{{ interval.minutes }} minutes', {{ column }}, timestamp with time zone '2000-01-01 00:00:00+00')
    {%- endif -%}
{%- endmacro %}

{% macro postgres__bar_bucket_end(interval, column) -%}
    {%- if interval.minutes is none -%}
        ((({{ column }} at time zone '{{ var("trading_timezone") }}') + interval '1 day') at time zone '{{ var("trading_timezone") }}')
    {%- else -%}
        ({{ column }} + interval '{{ interval.minutes }} minutes')
    {%- endif -%}
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
    {%- set tz = var("trading_timezone") -%}
    {%- if interval.minutes is none -%}
        {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
            "convert_timezone('" ~ tz ~ "', 'UTC', date_trunc('day', convert_timezone('" ~ tz ~ "', " ~ column ~ ")::timestamp_ntz))"
        ) }}
    {%- else -%}
        {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
            "time_slice(convert_timezone('UTC', " ~ column ~ ")::timestamp_ntz, " ~ interval.minutes ~ ", 'MINUTE', 'START')"
        ) }}
    {%- endif -%}
{%- endmacro %}

{% macro snowflake__bar_bucket_end(interval, column) -%}
    {%- set tz = var("trading_timezone") -%}
    {%- if interval.minutes is none -%}
        {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
            "convert_timezone('" ~ tz ~ "', 'UTC', dateadd('day', 1, convert_timezone('" ~ tz ~ "', " ~ column ~ ")::timestamp_ntz))"
        ) }}
    {%- else -%}
        dateadd('minute', {{ interval.minutes }}, {{ column }})
    {%- endif -%}
{%- endmacro %}

{#
    The start of the `1d` bar of the day that a daily candle stands for: Finnhub's daily
    candles carry 00:00 UTC of the trading date, so the candle's UTC date is the trading date,
    and the bar starts at 00:00 of that date in the trading time zone.
#}
{% macro daily_candle_bar_start(column) %}
    {{ return(adapter.dispatch('daily_candle_bar_start')(column)) }}
{% endmacro %}

{% macro postgres__daily_candle_bar_start(column) -%}
    (cast({{ column }} at time zone 'UTC' as date)::timestamp at time zone '{{ var("trading_timezone") }}')
{%- endmacro %}

{% macro snowflake__daily_candle_bar_start(column) -%}
    {%- set tz = var("trading_timezone") -%}
    {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
        "convert_timezone('" ~ tz ~ "', 'UTC', to_date(convert_timezone('UTC', " ~ column ~ "))::timestamp_ntz)"
    ) }}
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

{# The trading day (a date in the trading time zone) of timestamp `column`. #}
{% macro trading_date(column) %}
    {{ return(adapter.dispatch('trading_date')(column)) }}
{% endmacro %}

{% macro postgres__trading_date(column) -%}
    cast({{ column }} at time zone '{{ var("trading_timezone") }}' as date)
{%- endmacro %}

{% macro snowflake__trading_date(column) -%}
    cast(convert_timezone('{{ var("trading_timezone") }}', {{ column }}) as date)
{%- endmacro %}

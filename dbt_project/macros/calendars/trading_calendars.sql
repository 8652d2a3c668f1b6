{#
    Trading calendars: which calendar a symbol trades on, and which session (and trading date)
    an instant belongs to. Sessions come from raw.trading_sessions (exchange_calendars),
    as instants in int_trading_sessions; the `24/7` calendar needs none: one session per UTC day,
    all of it regular.

    Daily bars are made of the trades of one regular session (see fct_bars); intraday bars carry
    the session of their start: `pre`, `regular`, `post` or `closed` (no session: nights,
    weekends, holidays).
#}

{# The calendar of a symbol: its symbol_reference row's, else XNYS, or 24/7 for Finnhub's
   `EXCHANGE:PAIR` symbols (crypto and forex, e.g. BINANCE:BTCUSDT, OANDA:EUR_USD). #}
{% macro symbol_calendar(reference_calendar, symbol) -%}
    coalesce(
        {{ reference_calendar }},
        case when {{ symbol }} like '%:%' then '24/7' else '{{ var("default_calendar") }}' end
    )
{%- endmacro %}

{# The time zone a calendar's trading dates are in (UTC for 24/7). #}
{% macro calendar_timezone(calendar_timezone_column) -%}
    coalesce({{ calendar_timezone_column }}, 'UTC')
{%- endmacro %}

{#
    `relation` plus `trading_date` and `session` of the instant `ts_column`, for the calendar
    in its column `calendar`. `calendars` and `sessions` are relations with the columns of
    int_trading_calendars and int_trading_sessions.
#}
{% macro with_trading_session(relation, ts_column, calendars, sessions) %}
    select
        {{ relation }}.*,
        case
            when {{ relation }}.calendar = '24/7' then {{ tickhouse.utc_date(relation ~ '.' ~ ts_column) }}
            when sessions.calendar is not null
                and {{ relation }}.{{ ts_column }} >= sessions.pre_open
                and {{ relation }}.{{ ts_column }} < sessions.post_close
                then sessions.trading_date
        end as trading_date,
        case
            when {{ relation }}.calendar = '24/7' then 'regular'
            when sessions.calendar is null then 'closed'
            when {{ relation }}.{{ ts_column }} >= sessions.regular_open
                and {{ relation }}.{{ ts_column }} < sessions.regular_close then 'regular'
            when {{ relation }}.{{ ts_column }} >= sessions.pre_open
                and {{ relation }}.{{ ts_column }} < sessions.regular_open then 'pre'
            when {{ relation }}.{{ ts_column }} >= sessions.regular_close
                and {{ relation }}.{{ ts_column }} < sessions.post_close then 'post'
            else 'closed'
        end as session
    from {{ relation }}
    left join {{ calendars }} as calendars
        on calendars.calendar = {{ relation }}.calendar
    left join {{ sessions }} as sessions
        on sessions.calendar = {{ relation }}.calendar
        and sessions.trading_date = {{ tickhouse.local_date(relation ~ '.' ~ ts_column, 'calendars.timezone') }}
{% endmacro %}

{# The date of instant `column` in time zone `timezone` (a column or a quoted literal). #}
{% macro local_date(column, timezone) %}
    {{ return(adapter.dispatch('local_date', 'tickhouse')(column, timezone)) }}
{% endmacro %}

{% macro postgres__local_date(column, timezone) -%}
    cast({{ column }} at time zone {{ timezone }} as date)
{%- endmacro %}

{% macro snowflake__local_date(column, timezone) -%}
    cast(convert_timezone({{ timezone }}, {{ column }}) as date)
{%- endmacro %}

{# The UTC date of instant `column`. #}
{% macro utc_date(column) -%}
    {{ tickhouse.local_date(column, "'UTC'") }}
{%- endmacro %}

{# 00:00 of date `date_column` in time zone `timezone`, as an instant. #}
{% macro day_start(date_column, timezone) %}
    {{ return(adapter.dispatch('day_start', 'tickhouse')(date_column, timezone)) }}
{% endmacro %}

{% macro postgres__day_start(date_column, timezone) -%}
    (cast({{ date_column }} as timestamp) at time zone {{ timezone }})
{%- endmacro %}

{% macro snowflake__day_start(date_column, timezone) -%}
    {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
        "convert_timezone(" ~ timezone ~ ", 'UTC', cast(" ~ date_column ~ " as timestamp_ntz))"
    ) }}
{%- endmacro %}

{# The instant of local time `time_column` ('HH:MM') on date `date_column` in `timezone`. #}
{% macro local_time_instant(date_column, time_column, timezone) %}
    {{ return(adapter.dispatch('local_time_instant', 'tickhouse')(date_column, time_column, timezone)) }}
{% endmacro %}

{% macro postgres__local_time_instant(date_column, time_column, timezone) -%}
    (({{ date_column }} + cast({{ time_column }} as time)) at time zone {{ timezone }})
{%- endmacro %}

{% macro snowflake__local_time_instant(date_column, time_column, timezone) -%}
    {{ tickhouse.snowflake__utc_ntz_to_timestamp_tz(
        "convert_timezone(" ~ timezone ~ ", 'UTC', timestamp_ntz_from_parts(" ~ date_column ~ ", to_time(" ~ time_column ~ ")))"
    ) }}
{%- endmacro %}

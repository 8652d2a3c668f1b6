{#
    The bar intervals of fct_bars. Intraday buckets are aligned to the hour in UTC; `1d` is
    the calendar day in `var('trading_timezone')` (America/New_York), so a trading day's
    pre-market, regular and after-hours trades share one daily bar.
#}
{% macro bar_intervals() %}
    {% set intraday = var('bar_lookback_intraday_minutes') | int %}
    {% set daily = var('bar_lookback_daily_minutes') | int %}
    {{ return([
        {'name': '1m', 'minutes': 1, 'lookback_minutes': intraday},
        {'name': '5m', 'minutes': 5, 'lookback_minutes': intraday},
        {'name': '15m', 'minutes': 15, 'lookback_minutes': intraday},
        {'name': '1h', 'minutes': 60, 'lookback_minutes': intraday},
        {'name': '1d', 'minutes': none, 'lookback_minutes': daily},
    ]) }}
{% endmacro %}

{# The longest lookback of any interval: how far back minute bars are kept up to date. #}
{% macro max_bar_lookback_minutes() %}
    {{ return([var('bar_lookback_intraday_minutes') | int, var('bar_lookback_daily_minutes') | int] | max) }}
{% endmacro %}

{#
    For int_trades_aggregated_to_minute_bars: per symbol, the first minute that received a
    trade loaded since the last run (loaded_at after the newest last_loaded_at, less
    `load_watermark_margin_minutes`), among trades whose event time is within the longest
    bar lookback of the newest minute. A list of (symbol, minute, earliest minute of all
    symbols), timestamps as text. It asks the raw table, not the staging view: which minutes
    received loads is a question about loading (a redelivery only causes a rebuild), and the
    raw table's loaded_at index answers it without touching older rows.
#}
{% macro minute_bars_rebuild_from() %}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select
            symbol,
            {{ dbt.cast('min(' ~ tickhouse.bar_bucket_start({'minutes': 1}, 'event_time') ~ ')', api.Column.translate_type('string')) }},
            {{ dbt.cast('min(min(' ~ tickhouse.bar_bucket_start({'minutes': 1}, 'event_time') ~ ')) over ()', api.Column.translate_type('string')) }}
        from {{ source('tickhouse', 'trades') }}
        where event_time >= {{ tickhouse.watermark('bar_start', tickhouse.max_bar_lookback_minutes()) }}
          and loaded_at > {{ tickhouse.watermark('last_loaded_at', var('load_watermark_margin_minutes')) }}
        group by 1
        order by 1
    {%- endset -%}
    {{ return(run_query(query).rows | map('list') | list) }}
{% endmacro %}

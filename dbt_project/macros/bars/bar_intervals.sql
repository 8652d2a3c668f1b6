{#
    The bar intervals of fct_bars: the one list every model takes them from. Intraday buckets
    (`minutes`) are aligned to the hour in UTC; `1d` is one regular session of the symbol's
    trading calendar (macros/calendars), its bar_start 00:00 of the trading date in the
    calendar's time zone. `resolution` is the Finnhub candle resolution that makes bars of the
    interval where no trade does (int_candles_deduplicated_to_bars).
#}
{% macro bar_intervals() %}
    {{ return([
        {'name': '1m', 'minutes': 1, 'resolution': '1'},
        {'name': '5m', 'minutes': 5, 'resolution': '5'},
        {'name': '15m', 'minutes': 15, 'resolution': '15'},
        {'name': '1h', 'minutes': 60, 'resolution': '60'},
        {'name': '1d', 'minutes': none, 'resolution': 'D'},
    ]) }}
{% endmacro %}

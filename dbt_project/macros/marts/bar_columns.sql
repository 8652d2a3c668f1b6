{#
    The public columns of the bars, in the order BI tools see them: fct_bars shows them all, the
    one-interval views (bars_of_interval) all but bar_interval. The marts are views replaced in
    place, so their columns and the order of them never change: this is the one list of both.
#}
{% macro bar_columns(with_interval=true) %}
    {%- set columns = [
        'symbol',
        'bar_interval',
        'bar_start',
        'trading_date',
        'session',
        'open',
        'high',
        'low',
        'close',
        'volume',
        'vwap',
        'trade_count',
        'bar_source',
        'adj_open',
        'adj_high',
        'adj_low',
        'adj_close',
        'adj_volume',
        'adj_total_return_factor',
    ] -%}
    {{ return(columns if with_interval else columns | reject('equalto', 'bar_interval') | list) }}
{% endmacro %}

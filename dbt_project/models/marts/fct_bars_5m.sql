-- The 5m bars of fct_bars alone (macros/marts/bars_of_interval.sql).
{{ tickhouse.bars_of_interval('5m') }}

-- OHLCV bars per symbol and interval, for BI tools (docs/interfaces/warehouse.md; enforced contract in
-- _marts__models.yml). Built incrementally in intermediate.int_bars; this view shows its public
-- columns. Every interval is here: filter on bar_interval, or use the one-interval views
-- fct_bars_1m, _5m, _15m, _1h and _1d, which cannot be summed across intervals by mistake.

with bars as (

    select * from {{ ref('int_bars_split_adjusted') }}

),

final as (

    select
        {{ tickhouse.bar_columns() | join(',\n        ') }}

    from bars

)

select * from final

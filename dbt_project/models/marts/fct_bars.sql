-- OHLCV bars per symbol and interval, for BI tools (docs/interfaces/warehouse.md; enforced contract in
-- _marts__models.yml). Built incrementally in intermediate.int_bars; this view shows its public
-- columns. Every interval is here: filter on bar_interval, or use the one-interval views
-- fct_bars_1m, _5m, _15m, _1h and _1d, which cannot be summed across intervals by mistake.

with bars as (

    select * from {{ ref('int_bars_split_adjusted') }}

),

final as (

    select
        symbol,
        bar_interval,
        bar_start,
        trading_date,
        session,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        trade_count,
        bar_source,
        adj_open,
        adj_high,
        adj_low,
        adj_close,
        adj_volume,
        adj_total_return_factor

    from bars

)

select * from final

-- Technical indicators per bar, for BI tools (docs/interfaces/warehouse.md; enforced contract in
-- _marts__models.yml): computed incrementally in intermediate.int_technicals (which keeps the
-- indicator state), shown here with the bar's exact split-adjusted close and trading date.

with technicals as (

    select * from {{ ref('int_technicals') }}

),

bars as (

    select * from {{ ref('int_bars_split_adjusted') }}

),

final as (

    select
        technicals.symbol,
        technicals.bar_interval,
        technicals.bar_start,
        bars.trading_date,
        bars.adj_close as close,
        technicals.sma_20,
        technicals.sma_50,
        technicals.sma_200,
        technicals.ema_12,
        technicals.ema_26,
        technicals.macd,
        technicals.macd_signal,
        technicals.macd_hist,
        technicals.rsi_14,
        technicals.bb_upper,
        technicals.bb_middle,
        technicals.bb_lower

    from technicals
    inner join bars
        on bars.symbol = technicals.symbol
        and bars.bar_interval = technicals.bar_interval
        and bars.bar_start = technicals.bar_start

)

select * from final

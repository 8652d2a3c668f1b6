-- One row per symbol and trading date, for BI tools (docs/interfaces/warehouse.md; enforced contract in
-- _marts__models.yml): computed incrementally in intermediate.int_stock_analytics.

with analytics as (

    select * from {{ ref('int_stock_analytics') }}

),

final as (

    select
        symbol,
        trading_date,
        daily_close,
        previous_trading_date,
        sessions_since_previous,
        previous_close,
        daily_change_pct,
        ma_7_day,
        ma_30_day,
        volatility_30_day,
        high_52_week,
        low_52_week,
        daily_volume

    from analytics

)

select * from final

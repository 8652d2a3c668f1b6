-- int_bars with its split-adjusted prices and volume beside the as-traded ones, and the
-- dividend total-return factor (int_adjustment_factors has the formulas). A view: a split
-- learned later restates every bar of the symbol at the next build of the factors, without
-- rewriting int_bars. A bar is on the share basis of its trading date; an intraday bar outside
-- any session (no trading date) on that of its UTC date.

with

bars as (

    select * from {{ ref('int_bars') }}

),

factors as (

    select * from {{ ref('int_adjustment_factors') }}

),

final as (

    select
        bars.symbol,
        bars.bar_interval,
        bars.bar_start,
        bars.trading_date,
        bars.session,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.vwap,
        bars.trade_count,
        bars.bar_source,
        {%- for price in ['open', 'high', 'low', 'close'] %}
        case
            when factors.symbol is null then bars.{{ price }}
            else bars.{{ price }} * factors.split_from_product / factors.split_to_product
        end as adj_{{ price }},
        {%- endfor %}
        case
            when factors.symbol is null then bars.volume
            else bars.volume * factors.split_to_product / factors.split_from_product
        end as adj_volume,
        cast(coalesce(factors.total_return_factor, 1) as {{ dbt.type_float() }}) as adj_total_return_factor,
        bars.source_updated_at,
        bars.updated_at

    from bars
    left join factors
        on factors.symbol = bars.symbol
        and coalesce(bars.trading_date, {{ tickhouse.utc_date('bars.bar_start') }}) >= factors.applies_from
        and coalesce(bars.trading_date, {{ tickhouse.utc_date('bars.bar_start') }}) < factors.applies_before

)

select * from final

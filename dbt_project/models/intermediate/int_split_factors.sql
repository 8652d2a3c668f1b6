{{
    config(
        materialized='table',
    )
}}

-- Per symbol, the trading-date ranges between its split ex-dates, each with Π to_factor and
-- Π from_factor of the splits with an ex-date after a date of the range (exact numerics). The
-- splits between two dates D1 < D2 (ex-date after D1, on or before D2) are the quotient of the
-- products of D1 and D2: what int_candles_deduplicated_to_bars uses to bring a split-adjusted
-- candle back to its as-traded prices. Splits only, from the corporate actions alone (no bars:
-- int_adjustment_factors, which also needs daily closes for the dividends, is built after the
-- bars). A range is [applies_from, applies_before); dates on or after the symbol's last ex-date
-- have no range (both products 1). Rebuilt whole at every build: a handful of rows per symbol.

with recursive

splits as (

    select * from {{ ref('stg_tickhouse__corporate_actions') }}
    where action = 'split'

),

-- at most one split per symbol and ex-date (raw's key)
own_factors as (

    select
        symbol,
        ex_date,
        cast(to_factor as {{ dbt.type_numeric() }}) as split_to,
        cast(from_factor as {{ dbt.type_numeric() }}) as split_from,
        row_number() over (partition by symbol order by ex_date desc) as newest_first,
        lag(ex_date) over (partition by symbol order by ex_date) as previous_ex_date
    from splits

),

-- products from the newest ex-date back (exact numerics)
{{ products_from_newest_ex_date('own_factors', [
    ('split_to_product', 'split_to', dbt.type_numeric()),
    ('split_from_product', 'split_from', dbt.type_numeric()),
]) }},

final as (

    select
        symbol,
        coalesce(previous_ex_date, cast('1900-01-01' as date)) as applies_from,
        ex_date as applies_before,
        split_to_product,
        split_from_product

    from cumulative

)

select * from final

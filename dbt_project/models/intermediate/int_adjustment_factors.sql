{{
    config(
        materialized='table',
    )
}}

-- Per symbol, the trading-date ranges between its ex-dates, each with the factors that bring a
-- bar of that range to today's share basis (docs/interfaces/warehouse.md):
--   split factor        = Π split_ratio of the splits with an ex-date after the bar's trading date,
--                         kept as Π to_factor and Π from_factor (exact numerics):
--                         adj price = price × Π from / Π to, adj volume = volume × Π to / Π from;
--   total-return factor = Π (1 − cash_amount / previous close) of the dividends with an ex-date
--                         after the bar's trading date (CRSP / Yahoo style), where the previous
--                         close is the as-traded close of the symbol's last daily bar before the
--                         ex-date, on the ex-date's share basis (divided by a split of that same
--                         day); a dividend without such a bar, or not below it, counts as 1.
-- A range is [applies_from, applies_before); bars on or after the symbol's last ex-date have no
-- range (both factors 1). Rebuilt whole at every full build: a handful of rows per symbol.

{%- set daily_bars = ref('int_bars') %}

with recursive

actions as (

    select * from {{ ref('stg_tickhouse__corporate_actions') }}

),

dividends as (

    select symbol, ex_date, cash_amount
    from actions
    where action = 'dividend'

),

previous_sessions as (

    select
        dividends.symbol,
        dividends.ex_date,
        max(daily.trading_date) as previous_trading_date
    from dividends
    inner join {{ daily_bars }} as daily
        on daily.symbol = dividends.symbol
        and daily.bar_interval = '1d'
        and daily.trading_date < dividends.ex_date
        and daily.close is not null
    group by 1, 2

),

previous_closes as (

    select
        previous_sessions.symbol,
        previous_sessions.ex_date,
        daily.close as previous_close
    from previous_sessions
    inner join {{ daily_bars }} as daily
        on daily.symbol = previous_sessions.symbol
        and daily.bar_interval = '1d'
        and daily.trading_date = previous_sessions.previous_trading_date

),

-- one row per symbol and ex-date (at most one split and one dividend each: raw's key)
per_ex_date as (

    select
        actions.symbol,
        actions.ex_date,
        max(case when actions.action = 'split' then actions.to_factor end) as split_to,
        max(case when actions.action = 'split' then actions.from_factor end) as split_from,
        max(case when actions.action = 'dividend' then actions.cash_amount end) as cash_amount
    from actions
    group by 1, 2

),

own_factors as (

    select
        per_ex_date.symbol,
        per_ex_date.ex_date,
        cast(coalesce(per_ex_date.split_to, 1) as {{ dbt.type_numeric() }}) as split_to,
        cast(coalesce(per_ex_date.split_from, 1) as {{ dbt.type_numeric() }}) as split_from,
        cast(
            case
                when previous_closes.previous_close > 0
                    and per_ex_date.cash_amount
                        < previous_closes.previous_close * coalesce(per_ex_date.split_from, 1)
                            / coalesce(per_ex_date.split_to, 1)
                    then 1 - per_ex_date.cash_amount * coalesce(per_ex_date.split_to, 1)
                        / (previous_closes.previous_close * coalesce(per_ex_date.split_from, 1))
                else 1
            end
            as {{ dbt.type_float() }}
        ) as dividend_factor,
        row_number() over (partition by per_ex_date.symbol order by per_ex_date.ex_date desc) as newest_first,
        lag(per_ex_date.ex_date) over (partition by per_ex_date.symbol order by per_ex_date.ex_date)
            as previous_ex_date
    from per_ex_date
    left join previous_closes
        on previous_closes.symbol = per_ex_date.symbol
        and previous_closes.ex_date = per_ex_date.ex_date

),

-- products from the newest ex-date back (the split products exact)
{{ products_from_newest_ex_date('own_factors', [
    ('split_to_product', 'split_to', dbt.type_numeric()),
    ('split_from_product', 'split_from', dbt.type_numeric()),
    ('total_return_factor', 'dividend_factor', dbt.type_float()),
]) }},

final as (

    select
        symbol,
        coalesce(previous_ex_date, cast('1900-01-01' as date)) as applies_from,
        ex_date as applies_before,
        split_to_product,
        split_from_product,
        total_return_factor

    from cumulative

)

select * from final

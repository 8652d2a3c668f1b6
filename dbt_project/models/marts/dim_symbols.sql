-- One row per symbol, for BI tools (enforced contract in _marts__models.yml): every symbol
-- symbol_reference lists and every symbol with bars, with its name and sector where known and
-- the trading calendar its daily bars follow.

with reference as (

    select * from {{ ref('symbol_reference') }}

),

symbols_with_bars as (

    select distinct symbol from {{ ref('int_bar_series') }}

),

calendars as (

    select * from {{ ref('int_trading_calendars') }}

),

all_symbols as (

    select symbol from reference
    union
    select symbol from symbols_with_bars

),

final as (

    select
        all_symbols.symbol,
        reference.company_name,
        reference.exchange,
        {{ tickhouse.symbol_calendar('reference.calendar', 'all_symbols.symbol') }} as calendar,
        {{ tickhouse.calendar_timezone('calendars.timezone') }} as timezone,
        reference.sector,
        reference.industry,
        reference.symbol is not null as is_in_reference

    from all_symbols
    left join reference
        on reference.symbol = all_symbols.symbol
    left join calendars
        on calendars.calendar = {{ tickhouse.symbol_calendar('reference.calendar', 'all_symbols.symbol') }}

)

select * from final

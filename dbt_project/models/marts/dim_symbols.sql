-- One row per symbol, for BI tools (enforced contract in _marts__models.yml): every symbol
-- symbol_reference lists, every symbol with bars and every symbol with a company profile, with
-- its name, exchange, currency, industry and market cap where known (the Finnhub profile first,
-- then the seed) and the trading calendar its daily bars follow.

with reference as (

    select * from {{ ref('symbol_reference') }}

),

symbols_with_bars as (

    select distinct symbol from {{ ref('int_bar_series') }}

),

profiles as (

    select * from {{ ref('stg_tickhouse__symbol_profiles') }}

),

calendars as (

    select * from {{ ref('int_trading_calendars') }}

),

all_symbols as (

    select symbol from reference
    union
    select symbol from symbols_with_bars
    union
    select symbol from profiles

),

final as (

    select
        all_symbols.symbol,
        coalesce(profiles.company_name, reference.company_name) as company_name,
        coalesce(profiles.exchange, reference.exchange) as exchange,
        profiles.currency,
        {{ tickhouse.symbol_calendar('reference.calendar', 'all_symbols.symbol') }} as calendar,
        {{ tickhouse.calendar_timezone('calendars.timezone') }} as timezone,
        reference.sector,
        coalesce(profiles.industry, reference.industry) as industry,
        profiles.market_cap_millions,
        profiles.profile_updated_at,
        reference.symbol is not null as is_in_reference

    from all_symbols
    left join reference
        on reference.symbol = all_symbols.symbol
    left join profiles
        on profiles.symbol = all_symbols.symbol
    left join calendars
        on calendars.calendar = {{ tickhouse.symbol_calendar('reference.calendar', 'all_symbols.symbol') }}

)

select * from final

-- One row per symbol: its company profile (Finnhub /stock/profile2, or the seed offline).

with

source as (

    select * from {{ source('tickhouse', 'symbol_profiles') }}

),

renamed as (

    select
        symbol,
        name as company_name,
        exchange,
        currency,
        country,
        industry,
        market_cap as market_cap_millions,
        ipo as ipo_date,
        source as profile_source,
        fetched_at as profile_updated_at

    from source

)

select * from renamed

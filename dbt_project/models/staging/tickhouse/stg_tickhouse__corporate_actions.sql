-- One row per corporate action (symbol, ex_date, action): splits with their ratio as new shares
-- per old share, dividends with their cash amount per share.

with

source as (

    select * from {{ source('tickhouse', 'corporate_actions') }}

),

renamed as (

    select
        symbol,
        ex_date,
        action,
        from_factor,
        to_factor,
        case when action = 'split' then to_factor / from_factor end as split_ratio,
        case when action = 'dividend' then cash_amount end as cash_amount,
        currency,
        source as action_source,
        fetched_at,
        loaded_at

    from source

)

select * from renamed

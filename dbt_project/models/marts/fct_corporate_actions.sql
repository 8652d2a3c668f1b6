-- Splits and dividends per symbol and ex-date, for BI tools (docs/interfaces/warehouse.md; enforced
-- contract in _marts__models.yml). split_ratio is new shares per old share (4 for a 4:1 split).

with actions as (

    select * from {{ ref('stg_tickhouse__corporate_actions') }}

),

final as (

    select
        symbol,
        ex_date,
        action,
        split_ratio,
        cash_amount,
        currency

    from actions

)

select * from final

{{
    config(
        materialized='incremental',
        unique_key=['symbol'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol'], 'unique': True},
            {'columns': ['updated_at']},
        ],
    )
}}

-- One row per symbol with splits (or that had some): its list of splits, and the run that saw
-- that list change (updated_at). A symbol whose row a run rewrites has every split-adjusted
-- series restated by int_technicals and int_stock_analytics in that run; no other symbol is.
-- Dividends do not change adj_* nor the indicators, so they are not in the list.

with

splits as (

    select * from {{ ref('stg_tickhouse__corporate_actions') }}
    where action = 'split'

),

{%- set text_type = api.Column.translate_type('string') %}

signatures as (

    select
        symbol,
        {{ dbt.listagg(
            dbt.concat([
                'cast(ex_date as ' ~ text_type ~ ')', "':'",
                'cast(to_factor as ' ~ text_type ~ ')', "'/'",
                'cast(from_factor as ' ~ text_type ~ ')',
            ]),
            "','",
            'order by ex_date',
        ) }} as splits_signature
    from splits
    group by 1

),

{% if is_incremental() %}

-- a symbol whose last split was deleted keeps a row with an empty list (its history is restated once)
changed as (

    select
        coalesce(signatures.symbol, previous.symbol) as symbol,
        coalesce(signatures.splits_signature, '') as splits_signature
    from signatures
    full outer join {{ this }} as previous
        on previous.symbol = signatures.symbol
    where previous.symbol is null
       or coalesce(signatures.splits_signature, '') <> previous.splits_signature

),

{% else %}

changed as (

    select * from signatures

),

{% endif %}

final as (

    select
        symbol,
        splits_signature,
        {{ tickhouse.run_started_at_literal() }} as updated_at

    from changed

)

select * from final

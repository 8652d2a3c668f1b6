-- bar_number counts the bars of a series from 1 without gaps, so the state the next
-- incremental run continues from is the one of the bar just before it. Checked for the rows
-- the last run wrote: consecutive within them, and following on from the rows before.

with new_technicals as (

    select * from {{ ref('int_technicals') }}
    where {{ tickhouse.written_by_last_run(ref('int_technicals')) }}

),

numbered as (

    select
        symbol,
        bar_interval,
        bar_start,
        bar_number,
        min(bar_start) over (partition by symbol, bar_interval) as first_new_bar_start,
        row_number() over (partition by symbol, bar_interval order by bar_start) as position
    from new_technicals

),

series_starts as (

    select distinct
        symbol,
        bar_interval,
        first_new_bar_start
    from numbered

),

bars_before as (

    {{ tickhouse.last_bar_number_before('series_starts', 'first_new_bar_start') }}

),

final as (

    select numbered.*
    from numbered
    inner join bars_before
        on bars_before.symbol = numbered.symbol
        and bars_before.bar_interval = numbered.bar_interval
    where numbered.bar_number <> bars_before.last_bar_number + numbered.position

)

select * from final

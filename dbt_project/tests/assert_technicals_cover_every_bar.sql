-- Every bar with a close has its indicator row, with the same split-adjusted close, and every
-- indicator row its bar with a close:
-- checked for the rows the last runs of int_bars and int_technicals wrote (all rows after a
-- full refresh, or with --vars '{test_all_rows: true}').

with new_bars as (

    select * from {{ ref('int_bars_split_adjusted') }}
    where adj_close is not null
      and {{ tickhouse.written_by_last_run(ref('int_bars')) }}

),

new_technicals as (

    select * from {{ ref('int_technicals') }}
    where {{ tickhouse.written_by_last_run(ref('int_technicals')) }}

),

-- referenced once each, so that they join through the (symbol, bar_interval, bar_start)
-- indexes instead of being scanned whole
technicals as (

    select * from {{ ref('int_technicals') }}

),

bars as (

    select * from {{ ref('int_bars_split_adjusted') }}
    where adj_close is not null

),

bars_without_technicals as (

    select
        new_bars.symbol,
        new_bars.bar_interval,
        new_bars.bar_start,
        'bar without a matching int_technicals row' as problem
    from new_bars
    left join technicals
        on technicals.symbol = new_bars.symbol
        and technicals.bar_interval = new_bars.bar_interval
        and technicals.bar_start = new_bars.bar_start
    where technicals.symbol is null
       or technicals.close <> cast(new_bars.adj_close as {{ dbt.type_float() }})

),

technicals_without_bars as (

    select
        new_technicals.symbol,
        new_technicals.bar_interval,
        new_technicals.bar_start,
        'int_technicals row without its bar' as problem
    from new_technicals
    left join bars
        on bars.symbol = new_technicals.symbol
        and bars.bar_interval = new_technicals.bar_interval
        and bars.bar_start = new_technicals.bar_start
    where bars.symbol is null

),

final as (

    select * from bars_without_technicals
    union all
    select * from technicals_without_bars

)

select * from final

{% macro products_from_newest_ex_date(factors_cte, products) -%}
{#- A recursive CTE named `cumulative`: per symbol and ex-date of `factors_cte` (columns symbol,
    ex_date, previous_ex_date, newest_first = 1 for the newest ex-date, and one column per factor),
    the product of each factor over that ex-date and every later one of the symbol. SQL has no
    product aggregate, and the recursion keeps numeric products exact where exp(sum(ln(...))) would
    not. `products` lists (product column, factor column, SQL type) triples; the caller writes
    `with recursive`. Used by int_split_factors and int_adjustment_factors. -#}
cumulative (symbol, ex_date, previous_ex_date, newest_first
    {%- for product, factor, type in products %}, {{ product }}{% endfor %}) as (

    select
        symbol,
        ex_date,
        previous_ex_date,
        newest_first
        {%- for product, factor, type in products %},
        {{ factor }}
        {%- endfor %}
    from {{ factors_cte }}
    where newest_first = 1

    union all

    select
        {{ factors_cte }}.symbol,
        {{ factors_cte }}.ex_date,
        {{ factors_cte }}.previous_ex_date,
        {{ factors_cte }}.newest_first
        {%- for product, factor, type in products %},
        cast(cumulative.{{ product }} * {{ factors_cte }}.{{ factor }} as {{ type }})
        {%- endfor %}
    from cumulative
    inner join {{ factors_cte }}
        on {{ factors_cte }}.symbol = cumulative.symbol
        and {{ factors_cte }}.newest_first = cumulative.newest_first + 1

)
{%- endmacro %}

-- Company profiles of the symbols (Finnhub /stock/profile2, written by `tickhouse symbols refresh`
-- and the refresh_symbols DAG; or the dbt seed symbol_reference when Finnhub cannot be reached):
-- one row per symbol, replaced by each refresh. dim_symbols reads it through staging.
set local role ${loader};

create table if not exists raw.symbol_profiles (
    symbol          text        primary key,
    name            text,
    exchange        text,
    currency        text,
    country         text,
    industry        text,
    market_cap      numeric,    -- millions of `currency`, as Finnhub reports it
    ipo             date,
    weburl          text,
    source          text        not null check (source in ('finnhub', 'seed')),
    fetched_at      timestamptz not null,
    loaded_at       timestamptz not null default now()
);

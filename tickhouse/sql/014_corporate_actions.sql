-- Corporate actions (splits and dividends), written by `tickhouse corporate-actions refresh` and
-- the refresh_corporate_actions DAG, from Finnhub's /stock/split and /stock/dividend or from a CSV
-- file. One row per (symbol, ex_date, action): a refresh that serves the same action again
-- updates that row in place, so the same action is stored once however often it is fetched.
-- A split turns `from_factor` old shares into `to_factor` new ones (1 -> 4 is a 4:1 split); a
-- dividend carries `cash_amount` per share in `currency`.
set local role ${loader};

create table if not exists raw.corporate_actions (
    symbol          text        not null,
    ex_date         date        not null,
    action          text        not null check (action in ('split', 'dividend')),
    from_factor     numeric     check (from_factor > 0),
    to_factor       numeric     check (to_factor > 0),
    cash_amount     numeric     check (cash_amount >= 0),
    currency        text,
    source          text        not null,
    fetched_at      timestamptz not null,
    loaded_at       timestamptz not null default now(),
    primary key (symbol, ex_date, action),
    check (action <> 'split' or (from_factor is not null and to_factor is not null)),
    check (action <> 'dividend' or cash_amount is not null)
);

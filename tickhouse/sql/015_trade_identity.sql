-- The identity the Tickhouse producer gives each trade (docs/interfaces/kafka-messages.md keys `producer_id`,
-- `producer_seq`; null for trades of other producers). A trade resent after a producer crash is a
-- second message with its own Kafka coordinates, so it is stored as a row of its own; dbt staging
-- keeps the first load of each identity (stg_tickhouse__trades). The index serves that lookup:
-- for each row with an identity, is there an earlier row with the same one? Partial: rows without
-- an identity never need it. Created on the parent, so every day partition gets it.
set local role ${loader};

alter table raw.trades add column if not exists producer_id text;
alter table raw.trades add column if not exists producer_seq bigint;

create index if not exists trades_producer_identity
    on raw.trades (producer_id, producer_seq, symbol, event_time)
    where producer_id is not null;

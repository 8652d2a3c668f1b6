-- The metrics exporter's own role (least privilege): it reads the drain's bookkeeping in raw.load_stats
-- and nothing else, instead of connecting as the loader, which may write `raw`.
grant connect on database ${database} to ${monitor};
set local role ${loader};
grant usage on schema raw to ${monitor};
grant select on raw.load_stats to ${monitor};

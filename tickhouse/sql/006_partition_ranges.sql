-- Event-time partitions that survive history. Replaces one partition per UTC day,
-- which made ten years of daily trades into 2,613 partitions of raw.trades and every dbt run that
-- read them fail with "out of shared memory" (a query locks each partition and its indexes).
--
-- A partition's range is chosen when a row first needs one (raw.ensure_partitions):
--   * event times from the first day of the month twelve months back onwards (and the near
--     future): one calendar month, so live data, and the queries on it, stay in a few small
--     partitions and retention works month by month;
--   * older event times (history, backfills): one calendar year, ending where the monthly
--     window starts;
--   * either range is clipped so that it never overlaps a partition that already exists (the
--     one-day partitions of installs before this migration keep working as they are; no row is
--     moved or rewritten).
-- Every range created this way covers at least a whole month, so a table holds at most one
-- partition per year of history plus twelve per year of live data (plus pieces between day
-- partitions from before this migration), and one run creates at most that many, whatever
-- event times a batch carries: trades on every day since 1970 make ~57 yearly and ~13 monthly
-- partitions. No DEFAULT partition: every later ATTACH would have to scan it, and rows would stay
-- in it until someone moved them.
set local role ${loader};

-- The range of every attached partition of `parent`, from the catalog's bound expressions
-- (MINVALUE / MAXVALUE as -infinity / infinity; a DEFAULT partition has no range and is left out).
create or replace function raw.partition_ranges(parent regclass)
returns table (child regclass, lower_bound timestamptz, upper_bound timestamptz)
language sql stable
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
as $$
    select
        c.oid::regclass,
        case when b.expr like 'FOR VALUES FROM (MINVALUE)%' then '-infinity'::timestamptz
             else substring(b.expr from $re$FROM \('([^']*)'\)$re$)::timestamptz end,
        case when b.expr like '%TO (MAXVALUE)' then 'infinity'::timestamptz
             else substring(b.expr from $re$TO \('([^']*)'\)$re$)::timestamptz end
    from pg_inherits as i
    join pg_class as c on c.oid = i.inhrelid
    cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as expr) as b
    where i.inhparent = parent
      and b.expr <> 'DEFAULT'
$$;

-- The range a new partition holding `at` would cover before clipping: its calendar month when
-- `at` is on or after the first day of the month twelve months before `now`, else its calendar
-- year (cut where those months begin). UTC throughout.
create or replace function raw.natural_partition_range(
    at timestamptz,
    now timestamptz default now(),
    out lower_bound timestamptz,
    out upper_bound timestamptz
)
language sql stable
set timezone = 'UTC'
as $$
    with window_start as (
        select date_trunc('month', now) - interval '12 months' as monthly_from
    )
    select
        case when at >= monthly_from then date_trunc('month', at)
             else date_trunc('year', at) end,
        case when at >= monthly_from then date_trunc('month', at) + interval '1 month'
             else least(date_trunc('year', at) + interval '1 year', monthly_from) end
    from window_start
$$;

-- A partition's name suffix: `2019` for a calendar year, `2026_11` for a calendar month,
-- `20190101_20190704` otherwise (with `THHMISS` when a bound is not at midnight). Day partitions
-- from before this migration are `YYYYMMDD`, so the names never collide.
create or replace function raw.partition_suffix(lower_bound timestamptz, upper_bound timestamptz)
returns text
language sql immutable
set timezone = 'UTC'
as $$
    select case
        when lower_bound = date_trunc('year', lower_bound)
             and upper_bound = lower_bound + interval '1 year' then to_char(lower_bound, 'YYYY')
        when lower_bound = date_trunc('month', lower_bound)
             and upper_bound = lower_bound + interval '1 month' then to_char(lower_bound, 'YYYY_MM')
        else concat_ws('_',
            to_char(lower_bound, case when lower_bound = date_trunc('day', lower_bound)
                                      then 'YYYYMMDD' else 'YYYYMMDD"T"HH24MISS' end),
            to_char(upper_bound, case when upper_bound = date_trunc('day', upper_bound)
                                      then 'YYYYMMDD' else 'YYYYMMDD"T"HH24MISS' end))
    end
$$;

-- Makes sure every instant of [lower_bound, upper_bound) has a partition of `parent`, creating
-- the missing ones with the ranges described above; returns the partitions it created (or
-- re-attached). A partition is created on its own and then ATTACHed: ATTACH takes only a SHARE
-- UPDATE EXCLUSIVE lock on the parent, so readers (dbt, BI) are never blocked, as they would be
-- by CREATE TABLE ... PARTITION OF. That lock is taken first, before the ranges are read, so two
-- drains that need the same range create it once (the second waits for the first to commit and
-- then finds it), and so that this session's view of the parent's partitions is current (taking
-- a lock it does not hold yet makes PostgreSQL apply the catalog changes others committed). The
-- drain calls this only for event times its own view of the partitions does not cover. A
-- detached table with the name of the range is attached again (its rows come back, or ATTACH
-- says which row does not belong).
create or replace function raw.ensure_partitions(
    parent regclass,
    lower_bound timestamptz,
    upper_bound timestamptz
)
returns setof regclass
language plpgsql
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
as $$
declare
    parent_schema text;
    parent_name text;
    point timestamptz := lower_bound;
    covered_until timestamptz;
    lo timestamptz;
    hi timestamptz;
    child text;
    child_oid oid;
begin
    select n.nspname, c.relname into parent_schema, parent_name
    from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
    where c.oid = parent;
    execute format('lock table %s in share update exclusive mode', parent);
    while point < upper_bound loop
        select r.upper_bound into covered_until
        from raw.partition_ranges(parent) as r
        where r.lower_bound <= point and point < r.upper_bound;
        if found then
            point := covered_until;
            continue;
        end if;
        select n.lower_bound, n.upper_bound into lo, hi from raw.natural_partition_range(point) as n;
        select greatest(lo, max(r.upper_bound)) into lo
        from raw.partition_ranges(parent) as r where r.upper_bound <= point;
        select least(hi, min(r.lower_bound)) into hi
        from raw.partition_ranges(parent) as r where r.lower_bound > point;
        child := parent_name || '_' || raw.partition_suffix(lo, hi);
        child_oid := to_regclass(format('%I.%I', parent_schema, child));
        if child_oid is null then
            execute format('create table %I.%I (like %s including defaults)', parent_schema, child, parent);
        end if;
        execute format(
            'alter table %s attach partition %I.%I for values from (%L) to (%L)',
            parent, parent_schema, child, lo, hi
        );
        return next format('%I.%I', parent_schema, child)::regclass;
        point := hi;
    end loop;
end;
$$;

-- The function the drain used before this migration, kept for other callers (scripts, tests,
-- benchmarks that load raw rows directly): it now makes sure the partition of the current scheme
-- that holds `day` exists, instead of creating a partition for that day alone.
create or replace function raw.ensure_day_partition(parent regclass, day date)
returns void
language plpgsql
as $$
begin
    perform raw.ensure_partitions(
        parent, day::timestamp at time zone 'UTC', (day + 1)::timestamp at time zone 'UTC'
    );
end;
$$;

-- Opt-in maintenance for installs from before this migration (`tickhouse drain
-- --merge-day-partitions`): merges the partitions of `parent` that lie wholly inside
-- [lower_bound, upper_bound) into one partition covering exactly that range, in the caller's
-- transaction, and returns it. Unlike the migration this rewrites rows: they are copied into the
-- new table first (the old partitions stay readable meanwhile), then the old partitions are
-- detached and dropped and the new one attached, which holds an ACCESS EXCLUSIVE lock on the
-- parent only for those catalog steps (a CHECK constraint spares ATTACH its validation scan).
create or replace function raw.merge_partitions(
    parent regclass,
    lower_bound timestamptz,
    upper_bound timestamptz
)
returns regclass
language plpgsql
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
as $$
declare
    parent_schema text;
    parent_name text;
    key_column text;
    columns text;
    merged text;
    staging text;
    part record;
begin
    select n.nspname, c.relname into parent_schema, parent_name
    from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
    where c.oid = parent;
    select a.attname into key_column
    from pg_partitioned_table as p
    join pg_attribute as a on a.attrelid = p.partrelid and a.attnum = p.partattrs[0]
    where p.partrelid = parent;
    select string_agg(quote_ident(attname), ', ' order by attnum) into columns
    from pg_attribute where attrelid = parent and attnum > 0 and not attisdropped;
    if exists (
        select 1 from raw.partition_ranges(parent) as r
        where (r.lower_bound < merge_partitions.lower_bound and r.upper_bound > merge_partitions.lower_bound)
           or (r.lower_bound < merge_partitions.upper_bound and r.upper_bound > merge_partitions.upper_bound)
    ) then
        raise exception 'a partition of % crosses % or %: merge a range whose bounds are partition bounds',
            parent, lower_bound, upper_bound;
    end if;
    merged := parent_name || '_' || raw.partition_suffix(lower_bound, upper_bound);
    staging := left(merged, 50) || '_merging';
    execute format('create table %I.%I (like %s including defaults)', parent_schema, staging, parent);
    for part in
        select r.child from raw.partition_ranges(parent) as r
        where r.lower_bound >= merge_partitions.lower_bound
          and r.upper_bound <= merge_partitions.upper_bound
    loop
        execute format('insert into %I.%I (%s) select %s from %s', parent_schema, staging, columns,
                       columns, part.child);
    end loop;
    execute format(
        'alter table %I.%I add constraint merge_bound check (%I >= %L and %I < %L)',
        parent_schema, staging, key_column, lower_bound, key_column, upper_bound
    );
    for part in
        select r.child from raw.partition_ranges(parent) as r
        where r.lower_bound >= merge_partitions.lower_bound
          and r.upper_bound <= merge_partitions.upper_bound
    loop
        execute format('alter table %s detach partition %s', parent, part.child);
        execute format('drop table %s', part.child);
    end loop;
    execute format('alter table %I.%I rename to %I', parent_schema, staging, merged);
    execute format(
        'alter table %s attach partition %I.%I for values from (%L) to (%L)',
        parent, parent_schema, merged, lower_bound, upper_bound
    );
    execute format('alter table %I.%I drop constraint merge_bound', parent_schema, merged);
    return format('%I.%I', parent_schema, merged)::regclass;
end;
$$;

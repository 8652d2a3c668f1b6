-- dbt's incremental models (delete+insert) stage the new rows in a temporary table;
-- 001 revoked the database's default TEMPORARY privilege from public, so give it back to
-- the dbt role only.
grant temporary on database ${database} to ${dbt};

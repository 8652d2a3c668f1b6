-- What every BI tool connecting as bi_reader gets without configuring anything: the
-- marts first on its search path (unqualified `fct_bars` works), and a statement timeout, so one
-- runaway dashboard query cannot hold the warehouse.
-- Setting another role's defaults needs a superuser or CREATEROLE: where the owner is an ordinary
-- role (the local stack) the bootstrap superuser sets them at every setup
-- (tickhouse.warehouse.ensure_roles_and_databases) and this migration leaves them alone.
do $$
begin
    if (select rolsuper or rolcreaterole from pg_roles where rolname = current_user) then
        alter role ${bi_reader} in database ${database} set search_path = marts;
        alter role ${bi_reader} in database ${database} set statement_timeout = '120s';
        alter role ${bi_reader} in database ${database} set default_transaction_read_only = on;
    end if;
end
$$;

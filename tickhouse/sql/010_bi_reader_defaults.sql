-- What every BI tool connecting as bi_reader gets without configuring anything (issue 16): the
-- marts first on its search path (unqualified `fct_bars` works), and a statement timeout, so one
-- runaway dashboard query cannot hold the warehouse.
alter role ${bi_reader} in database ${database} set search_path = marts;
alter role ${bi_reader} in database ${database} set statement_timeout = '120s';
alter role ${bi_reader} in database ${database} set default_transaction_read_only = on;

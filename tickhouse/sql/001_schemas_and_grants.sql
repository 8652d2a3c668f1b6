-- Schemas and who may do what (docs/interfaces/warehouse.md):
--   loader    owns and writes `raw`;
--   dbt       reads `raw`, owns `staging`, `intermediate`, `marts`;
--   bi_reader reads `marts` and nothing else.
revoke all on database ${database} from public;
grant connect on database ${database} to ${loader}, ${dbt}, ${bi_reader};
grant create on database ${database} to ${dbt};
revoke create on schema public from public;
revoke usage on schema public from public;

create schema if not exists raw authorization ${loader};
create schema if not exists staging authorization ${dbt};
create schema if not exists intermediate authorization ${dbt};
create schema if not exists marts authorization ${dbt};

grant usage on schema raw to ${dbt};
grant select on all tables in schema raw to ${dbt};
alter default privileges for role ${loader} in schema raw grant select on tables to ${dbt};
alter default privileges for role ${owner} in schema raw grant select on tables to ${dbt};
alter default privileges for role ${owner} in schema raw grant select, insert, update, delete on tables to ${loader};

grant usage on schema marts to ${bi_reader};
grant select on all tables in schema marts to ${bi_reader};
alter default privileges for role ${dbt} in schema marts grant select on tables to ${bi_reader};

"""PostgreSQL warehouse helpers: connections per role, roles and databases, schema migrations.

Migrations are the SQL files in `tickhouse/sql/`, applied in name order by the owner role and
recorded in `public.schema_migrations`. They may use `${owner}`, `${loader}`, `${dbt}`,
`${bi_reader}`, `${monitor}` and `${database}`, which are replaced by quoted identifiers.

Roles and databases are made by an administrator: the cluster's bootstrap superuser
(`POSTGRES_SUPERUSER`, password `POSTGRES_SUPERUSER_PASSWORD`, which only setup reads from the
generated credentials) when it is configured, as in the local stack; otherwise the owner role itself
(a user's own cluster where `POSTGRES_USER` may create roles). The owner is then an ordinary role:
it owns the warehouse database and is a member of the job roles, so migrations can create objects
in their name, and nothing more.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tickhouse.config import Settings, merged_environment

SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_SUPERUSER = "tickhouse_superuser"


def superuser(environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(name, password) of the bootstrap superuser that setup uses, or None when not configured."""
    env = merged_environment() if environ is None else environ
    password = env.get("POSTGRES_SUPERUSER_PASSWORD", "")
    if not password:
        return None
    return env.get("POSTGRES_SUPERUSER") or DEFAULT_SUPERUSER, password


def admin_conninfo(settings: Settings, dbname: str = "postgres") -> str:
    """libpq string of the role that manages roles and databases: the bootstrap superuser when
    configured, else the owner."""
    admin = superuser()
    if admin is None:
        return settings.conninfo("owner", dbname)
    quoted = "'" + admin[1].replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (
        f"host={settings.postgres_host} port={settings.postgres_port} dbname={dbname} "
        f"user={admin[0]} password={quoted} connect_timeout=5"
    )


def connect(
    settings: Settings, role: str = "owner", dbname: str | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a psycopg connection as one of the configured roles."""
    return psycopg.connect(settings.conninfo(role, dbname), **kwargs)


def _ensure_role(cur: psycopg.Cursor[Any], name: str, password: str, attributes: str = "") -> None:
    cur.execute("select 1 from pg_roles where rolname = %s", (name,))
    verb = "alter" if cur.fetchone() else "create"
    cur.execute(
        sql.SQL("{} role {} login {} password {}").format(
            sql.SQL(verb), sql.Identifier(name), sql.SQL(attributes), sql.Literal(password)
        )
    )


def _ensure_database(cur: psycopg.Cursor[Any], name: str, owner: str) -> None:
    cur.execute("select 1 from pg_database where datname = %s", (name,))
    if not cur.fetchone():
        cur.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(owner))
        )


def ensure_roles_and_databases(settings: Settings) -> None:
    """Create (or re-password) the owner (when a superuser manages roles), loader, dbt,
    bi_reader, monitor and airflow roles and both databases."""
    admin = superuser()
    with psycopg.connect(admin_conninfo(settings), autocommit=True) as conn, conn.cursor() as cur:
        job_roles = [settings.loader_user, settings.dbt_user, settings.bi_reader_user]
        _ensure_role(cur, settings.loader_user, settings.loader_password)
        _ensure_role(cur, settings.dbt_user, settings.dbt_password)
        _ensure_role(cur, settings.bi_reader_user, settings.bi_reader_password)
        if settings.monitor_password:
            _ensure_role(cur, settings.monitor_user, settings.monitor_password)
        else:  # no exporter login configured: the role exists for migration 011's grants only
            cur.execute("select 1 from pg_roles where rolname = %s", (settings.monitor_user,))
            if not cur.fetchone():
                cur.execute(sql.SQL("create role {} nologin").format(sql.Identifier(settings.monitor_user)))
        job_roles.append(settings.monitor_user)
        _ensure_role(cur, settings.airflow_db_user, settings.airflow_db_password)
        owner_managed = admin is not None and admin[0] != settings.postgres_user
        if owner_managed:
            _ensure_role(
                cur,
                settings.postgres_user,
                settings.postgres_password,
                "nosuperuser nocreaterole nocreatedb nobypassrls noreplication",
            )
        _ensure_database(cur, settings.postgres_db, settings.postgres_user)
        if owner_managed:
            # migrations `set local role` to the job roles and set their default privileges
            for role in job_roles:
                cur.execute(
                    sql.SQL("grant {} to {}").format(
                        sql.Identifier(role), sql.Identifier(settings.postgres_user)
                    )
                )
            # what a role's session gets by default needs CREATEROLE or a superuser (migration 010)
            for setting, value in (
                ("search_path", "marts"),
                ("statement_timeout", "120s"),
                ("default_transaction_read_only", "on"),
            ):
                cur.execute(
                    sql.SQL("alter role {} in database {} set {} = {}").format(
                        sql.Identifier(settings.bi_reader_user),
                        sql.Identifier(settings.postgres_db),
                        sql.Identifier(setting),
                        sql.Literal(value),
                    )
                )
        _ensure_database(cur, settings.airflow_db, settings.airflow_db_user)
        # PUBLIC may connect to a new database by default: only Airflow's role may use its own
        cur.execute(
            sql.SQL("revoke all on database {} from public").format(sql.Identifier(settings.airflow_db))
        )


def render_migration(text: str, settings: Settings) -> str:
    def ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    names = {
        "owner": ident(settings.postgres_user),
        "loader": ident(settings.loader_user),
        "dbt": ident(settings.dbt_user),
        "bi_reader": ident(settings.bi_reader_user),
        "monitor": ident(settings.monitor_user),
        "database": ident(settings.postgres_db),
    }

    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            raise KeyError(f"unknown placeholder ${{{match.group(1)}}} in a migration")
        return names[match.group(1)]

    # only ${name} is a placeholder, so PL/pgSQL's $$ quoting passes through untouched
    return re.sub(r"\$\{(\w+)\}", replace, text)


def apply_migrations(settings: Settings, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their names."""
    applied: list[str] = []
    with connect(settings, "owner") as conn:
        conn.execute(
            "create table if not exists public.schema_migrations "
            "(name text primary key, applied_at timestamptz not null default now())"
        )
        conn.commit()
        done = {row[0] for row in conn.execute("select name from public.schema_migrations")}
        for path in sorted(sql_dir.glob("*.sql")):
            if path.name in done:
                continue
            with conn.transaction():
                conn.execute(render_migration(path.read_text(encoding="utf-8"), settings).encode())
                conn.execute("reset role")  # a migration may `set local role` for ownership
                conn.execute("insert into public.schema_migrations (name) values (%s)", (path.name,))
            applied.append(path.name)
    return applied


def load_reference_data(settings: Settings) -> bool:
    """raw.trading_sessions from the calendar file, when it changed; returns whether it loaded."""
    from tickhouse.calendars import load_sessions

    with connect(settings, "loader") as conn:
        return load_sessions(conn)


# pg_advisory_lock key of "one setup at a time" (any 64-bit constant; this spells "setup")
SETUP_LOCK_KEY = 0x7365747570


def setup_warehouse(settings: Settings) -> list[str]:
    """Roles, databases, migrations and reference data: everything the warehouse needs,
    idempotently. One setup at a time per cluster: two at once (the test suite's workers, each
    making a warehouse of its own) would re-password the same roles together, which PostgreSQL
    refuses ("tuple concurrently updated")."""
    with psycopg.connect(admin_conninfo(settings), autocommit=True) as lock:
        lock.execute("select pg_advisory_lock(%s)", (SETUP_LOCK_KEY,))
        ensure_roles_and_databases(settings)
        applied = apply_migrations(settings)
        load_reference_data(settings)
        return applied


if __name__ == "__main__":  # `python -m tickhouse.warehouse`: set up roles, databases, migrations
    from tickhouse.config import load_settings

    print("migrations applied:", ", ".join(setup_warehouse(load_settings())) or "none (up to date)")

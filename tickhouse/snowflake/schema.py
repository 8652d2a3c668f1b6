"""Creates the Snowflake RAW schema and tables (sql/raw_tables.sql), idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RAW_DDL = Path(__file__).resolve().parent / "sql" / "raw_tables.sql"


def ddl_statements(text: str | None = None) -> list[str]:
    """The statements of the DDL file, comments removed (the connector runs one at a time)."""
    text = RAW_DDL.read_text(encoding="utf-8") if text is None else text
    lines = [line.split("--", 1)[0] for line in text.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def setup_raw(conn: Any) -> int:
    """Create RAW and its tables in the connection's database if missing, and load the trading
    sessions when the calendar file changed; returns the DDL statements run."""
    statements = ddl_statements()
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    load_sessions(conn)
    return len(statements)


def load_sessions(conn: Any) -> bool:
    """RAW.TRADING_SESSIONS from tickhouse/reference/trading_sessions.csv, when that file changed
    (its sha256 is kept as the table's comment); returns whether it loaded."""
    import csv

    from tickhouse.calendars import COLUMNS, SESSIONS_CSV, file_digest

    digest = f"sha256:{file_digest(SESSIONS_CSV)}"
    with conn.cursor() as cur:
        cur.execute("select comment from information_schema.tables where table_schema = 'RAW'"
                    " and table_name = 'TRADING_SESSIONS'")
        row = cur.fetchone()
        if row is not None and row[0] == digest:
            return False
        with SESSIONS_CSV.open(newline="") as handle:
            rows = [tuple(r[c] for c in COLUMNS) for r in csv.DictReader(handle)]
        cur.execute("delete from raw.trading_sessions")
        # one bulk load (the connector's write_pandas: PUT + COPY INTO), not a statement per session
        import pandas as pd
        from snowflake.connector.pandas_tools import write_pandas

        frame = pd.DataFrame(rows, columns=[c.upper() for c in COLUMNS])
        frame["TRADING_DATE"] = pd.to_datetime(frame["TRADING_DATE"]).dt.date
        frame["SESSION_NUMBER"] = frame["SESSION_NUMBER"].astype("int64")
        write_pandas(conn, frame, "TRADING_SESSIONS", schema="RAW", quote_identifiers=False)
        cur.execute(f"comment on table raw.trading_sessions is '{digest}'")
    return True

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
    """Create RAW and its tables in the connection's database if missing; returns statements run."""
    statements = ddl_statements()
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    return len(statements)

"""Trading sessions of the exchanges Tickhouse builds daily bars for, from `exchange_calendars`.

They live in tickhouse/reference/trading_sessions.csv, written by this module, and setup loads
them into raw.trading_sessions (`load_sessions`, whenever the file changes), where dbt reads
them: one row per calendar and session with its trading date, its number in the
calendar, and the local times of its extended-hours open, regular open, regular close (early
closes and holidays as the maintained calendar has them) and extended-hours close.
`XNYS` (New York Stock Exchange; NASDAQ and the other US venues keep the same sessions) has
pre-market from 04:00 and after-hours until 20:00 America/New_York. Instruments that never close
(crypto, forex as Finnhub serves them) use the calendar `24/7`, which needs no rows: one session
per UTC day, all of it regular (dbt_project/macros/calendars).

Regenerate (e.g. to add a calendar or extend the years):
    python -m tickhouse.calendars --calendars XNYS,XLON --first-year 1990 --last-year 2035
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

SESSIONS_CSV = Path(__file__).resolve().parent / "reference" / "trading_sessions.csv"
DEFAULT_CALENDARS = ("XNYS",)
FIRST_YEAR, LAST_YEAR = 1990, 2035
# extended hours (local time) around the regular session, where the market has them
EXTENDED_HOURS = {"XNYS": (time(4, 0), time(20, 0))}
COLUMNS = (
    "calendar",
    "trading_date",
    "session_number",
    "timezone",
    "pre_open",
    "regular_open",
    "regular_close",
    "post_close",
)


@dataclass(frozen=True, slots=True)
class Session:
    """One session; the times are aware datetimes (written as local HH:MM)."""

    calendar: str
    trading_date: date
    session_number: int
    timezone: str
    pre_open: datetime
    regular_open: datetime
    regular_close: datetime
    post_close: datetime

    def row(self) -> tuple[str, ...]:
        zone = ZoneInfo(self.timezone)

        def local(moment: datetime) -> str:
            here = moment.astimezone(zone)
            if here.date() != self.trading_date:
                raise ValueError(f"{self.calendar} {self.trading_date}: {moment} is on another local day")
            return here.strftime("%H:%M")

        return (
            self.calendar,
            self.trading_date.isoformat(),
            str(self.session_number),
            self.timezone,
            local(self.pre_open),
            local(self.regular_open),
            local(self.regular_close),
            local(self.post_close),
        )


def sessions(calendar: str, first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> Iterator[Session]:
    """Every session of exchange calendar `calendar` from 1 January `first_year` to 31 December
    `last_year`, numbered from 1."""
    import exchange_calendars

    exchange = exchange_calendars.get_calendar(
        calendar, start=f"{first_year}-01-01", end=f"{last_year}-12-31"
    )
    zone = ZoneInfo(str(exchange.tz))
    pre, post = EXTENDED_HOURS.get(calendar, (None, None))
    for number, (label, row) in enumerate(exchange.schedule.iterrows(), start=1):
        day = label.date()
        regular_open = row["open"].to_pydatetime()
        regular_close = row["close"].to_pydatetime()
        pre_open = datetime.combine(day, pre, tzinfo=zone) if pre is not None else regular_open
        post_close = datetime.combine(day, post, tzinfo=zone) if post is not None else regular_close
        yield Session(
            calendar,
            day,
            number,
            str(zone),
            min(pre_open, regular_open),
            regular_open,
            regular_close,
            max(post_close, regular_close),
        )


def write_seed(
    path: Path = SESSIONS_CSV,
    calendars: Sequence[str] = DEFAULT_CALENDARS,
    first_year: int = FIRST_YEAR,
    last_year: int = LAST_YEAR,
) -> int:
    """Write the sessions CSV; returns the number of sessions."""
    count = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for calendar in calendars:
            for session in sessions(calendar, first_year, last_year):
                writer.writerow(session.row())
                count += 1
    return count


def file_digest(path: Path = SESSIONS_CSV) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sessions(conn: Any, path: Path = SESSIONS_CSV) -> bool:
    """(Re)load raw.trading_sessions from `path` when its content changed since the last load
    (the file's sha256 is kept as the table's comment); returns whether it loaded. Runs in the
    caller's transaction, as the table's owner (the loader role) or a member of it."""
    digest = file_digest(path)
    row = conn.execute("select obj_description('raw.trading_sessions'::regclass, 'pg_class')").fetchone()
    if row is not None and row[0] == f"sha256:{digest}":
        return False
    conn.execute("truncate raw.trading_sessions")
    with conn.cursor() as cur, cur.copy(
        f"copy raw.trading_sessions ({', '.join(COLUMNS)}) from stdin with (format csv, header true)"
    ) as copy:
        copy.write(path.read_bytes())
    conn.execute(f"comment on table raw.trading_sessions is 'sha256:{digest}'")
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickhouse.calendars", description=__doc__.split("\n")[0])
    parser.add_argument("--calendars", default=",".join(DEFAULT_CALENDARS), help="e.g. XNYS,XLON,24/7")
    parser.add_argument("--first-year", type=int, default=FIRST_YEAR)
    parser.add_argument("--last-year", type=int, default=LAST_YEAR)
    parser.add_argument("--output", type=Path, default=SESSIONS_CSV)
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.calendars.split(",") if c.strip()]
    count = write_seed(args.output, names, args.first_year, args.last_year)
    print(f"{count:,} sessions of {', '.join(names)} ({args.first_year}-{args.last_year}) -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

-- Trading sessions of the exchange calendars (exchange_calendars, via tickhouse.calendars), the
-- reference dbt builds daily bars and session windows from. Loaded from
-- tickhouse/reference/trading_sessions.csv by setup (tickhouse.calendars.load_sessions) whenever
-- that file changes; local times as HH:MM in the calendar's time zone.
set local role ${loader};

create table if not exists raw.trading_sessions (
    calendar        text    not null,
    trading_date    date    not null,
    session_number  integer not null,
    timezone        text    not null,
    pre_open        text    not null,
    regular_open    text    not null,
    regular_close   text    not null,
    post_close      text    not null,
    primary key (calendar, trading_date)
);

"""The supervisor of Tickhouse's long-running services (alert service, exporter, dashboard).

`tickhouse up` (and `make demo`) start the apps, then this supervisor as one more process of the
stack. It polls each app's pid file; an app that is gone (crashed, killed, OOM) is started again
after a backoff counted from when its death is noticed (1 s, 2 s, 4 s ... 60 s; back to 1 s
once the app has stayed up for `STABLE_S`), and each restart is counted in
`<state dir>/run/restarts.json`, which `tickhouse status` shows. `tickhouse down` stops the
supervisor before the apps, so it never revives what a user stops.

Run as `python -m ops.stack.supervisor NAME...` (the stack starts it; there is nothing to
configure).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ops.stack.apps import APPS, launch_app
from ops.stack.processes import Service, port_open
from ops.stack.restarts import record_restart
from tickhouse.config import load_settings

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STABLE_S = 60.0
POLL_S = 0.5


@dataclass(slots=True)
class _Watch:
    backoff: float = FIRST_BACKOFF_S
    next_try: float | None = None
    up_since: float | None = None
    seen_pid: int | None = None
    notes: list[str] = field(default_factory=list)


def supervise(
    state_dir: Path,
    names: Iterable[str],
    start: Callable[[str], int],
    port_of: Callable[[str], int],
    should_stop: Callable[[], bool],
    say: Callable[[str], None] = print,
) -> None:
    """Watch the named apps until `should_stop()`; `start(name)` starts one and returns its pid."""
    watches = {name: _Watch() for name in names}
    while not should_stop():
        now = time.monotonic()
        for name, watch in watches.items():
            pid = Service(name, state_dir).pid()
            if pid is not None:
                if watch.seen_pid != pid:
                    watch.seen_pid, watch.up_since = pid, now
                elif watch.up_since is not None and now - watch.up_since >= STABLE_S:
                    watch.backoff = FIRST_BACKOFF_S
                continue
            if watch.next_try is None:
                # noticed the death just now: wait out the backoff, then start it again
                watch.next_try = now + watch.backoff
            if now < watch.next_try:
                continue
            if port_open("127.0.0.1", port_of(name)):
                # a dying process can hold the port a moment; something else may hold it for good
                say(f"{name}: not running but port {port_of(name)} is taken; "
                    f"retrying in {watch.backoff:.0f} s")
                watch.next_try = now + watch.backoff
                continue
            new_pid = start(name)
            count = record_restart(state_dir, name, watch.backoff)
            next_backoff = min(watch.backoff * 2, MAX_BACKOFF_S)
            say(f"{name}: was gone (pid {watch.seen_pid}); restarted as pid {new_pid} "
                f"(restart {count}, next backoff {next_backoff:.0f} s)")
            watch.seen_pid, watch.up_since, watch.next_try = new_pid, now, None
            watch.backoff = next_backoff
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    apps = {app.name: app for app in APPS}
    unknown = set(names) - set(apps)
    if unknown:
        print(f"supervisor: unknown app(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"supervisor: watching {', '.join(names)}", flush=True)
    supervise(
        settings.state_dir,
        names,
        start=lambda name: launch_app(settings, apps[name]),
        port_of=lambda name: apps[name].port(),
        should_stop=lambda: stopping,
        say=lambda line: print(f"supervisor: {line}", flush=True),
    )
    print("supervisor: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

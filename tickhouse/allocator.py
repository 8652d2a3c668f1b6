"""The C allocator of a long-lived process that starts threads again and again.

glibc's malloc gives threads arenas of their own, up to 8 per core, and keeps what is freed in an
arena for that arena. A process whose threads come and go (a Kafka consumer's per drain, dbt's
per invocation) spreads its transient peaks over all of them, and its resident memory creeps up
with every peak that lands in an arena still holding a fragment of something alive. A limit of
two arenas keeps the freed memory where the next peak reuses it (docs/performance.md, "The soak";
`bench/bench_drain_memory.py`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

# <malloc.h>: mallopt's parameter for the most arenas the process may have
M_ARENA_MAX = -8
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Let glibc's malloc use at most `arenas` arenas from now on; whether the limit was set.

    Does nothing where the C library is not glibc, or when MALLOC_ARENA_MAX is in the environment
    (glibc has applied that one already; the operator's choice stands). Arenas made before the
    call stay, so call it before the process starts its threads.
    """
    if arenas < 1:
        raise ValueError(f"arenas={arenas} must be >= 1")
    if os.environ.get("MALLOC_ARENA_MAX", "").strip():
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        applied = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError) as err:
        log.debug("could not limit malloc arenas: %s", err)
        return False
    return applied

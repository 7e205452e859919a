"""The trivial task of bench/queue_overhead.py: note when it ran, nothing else.

A module of its own, importable as `bench.queue_probe` from the repository root (where `manage.py
qcluster` runs), with no Django and no imports from the other bench scripts: the cluster's workers
load it by its dotted path, and the in-process baseline calls the very same function.

It appends `tag index unix-time` to the file named by BENCH_QUEUE_PROBE_FILE. The task results
django-q2 saves cannot serve as the record: the engine keeps only the last `save_limit` (500) of them.
One O_APPEND descriptor per process, one write per call: lines from several workers never interleave.
"""

from __future__ import annotations

import os
import time

_fd: int | None = None


def noop(tag: str, index: int) -> int:
    """The cheapest task that can be observed: one small append to a local file."""
    global _fd
    if _fd is None:
        path = os.environ.get("BENCH_QUEUE_PROBE_FILE")
        if not path:
            raise RuntimeError("BENCH_QUEUE_PROBE_FILE is not set: bench/queue_overhead.py sets it for its children")
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_fd, f"{tag} {index} {time.time():.6f}\n".encode())
    return index

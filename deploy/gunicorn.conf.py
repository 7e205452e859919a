"""gunicorn settings for the engine's web processes (`gunicorn -c deploy/gunicorn.conf.py config.wsgi`).

Threads, not more processes: concurrent webhook requests share one group commit (WEBHOOK_GROUP_COMMIT),
which works within a process. Every value can be overridden from the environment of the unit.

A buffering proxy fronts gunicorn (deploy/nginx.conf): a request's thread is taken as soon as its headers
arrive, and a client sending its body slowly would hold it. The proxy reads whole requests first; the
engine's WEBHOOK_BODY_READ_TIMEOUT_SECONDS (408 for a body that stops arriving) is the fallback when gunicorn
is reached directly (tests/deploy/test_slow_clients.py).
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", os.cpu_count() or 2))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A webhook answers in milliseconds; anything near this is stuck (e.g. the database is unreachable).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (slow leaks); the jitter keeps them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
# The load balancer terminates TLS and sets X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "") else None
errorlog = "-"


def child_exit(server: object, worker: object) -> None:
    """prometheus_client multiprocess mode: forget a dead worker's live gauges (django-prometheus docs)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

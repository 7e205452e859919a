"""Slow clients against gunicorn as deployed (issue 18 items 6–7): the documented command and config
(`gunicorn -c deploy/gunicorn.conf.py config.wsgi`) on a free port, over real sockets.

Before: four connections sending `Content-Length: 1000` and then 4 bytes held their threads for as long as
they stayed open, and /healthz behind them never answered. Now each such body is answered 408 after
WEBHOOK_BODY_READ_TIMEOUT_SECONDS, so /healthz answers within that bound even when slow clients outnumber
the threads; a chunked body without a length is 411; Marketo refuses a bad token without waiting for the body.
"""

from __future__ import annotations

import http.client
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from tests.chaos.harness import free_port, tail

REPO = Path(__file__).resolve().parents[2]
THREADS = 4
READ_TIMEOUT = 2.0
MARKETO_TOKEN = "slow-clients-marketo-token-0123456789"


def database_url(directory: Path) -> str:
    """The migrated test database, for the server process: SQLite's copied to a file, PostgreSQL's by name."""
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        target = directory / "db.sqlite3"
        with sqlite3.connect(target) as copy:
            connection.connection.backup(copy)
        return f"sqlite:///{target}"
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Server:
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=15)

    def healthz(self, timeout: float) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gunicorn")
    with django_db_blocker.unblock():
        url = database_url(workdir)
    port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("GUNICORN_", "PROMETHEUS_"))},
        "ENV_FILE": "",
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": "slow-clients-test-secret-key-0123456789abcdefghijklmnop",
        "PRIVACY_HASH_SALT": "slow-clients-test-salt-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "PROVISIONING_WEBHOOK_SECRET": "whsec_c2xvdy1jbGllbnRzLXRlc3Qta2V5LTAwMDE=",
        "MARKETO_WEBHOOK_TOKEN": MARKETO_TOKEN,
        "WEBHOOK_BODY_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
        # The config's own knobs (docs/operations.md), small so that a few slow clients occupy every thread.
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": str(THREADS),
    }
    log = workdir / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi"],
            cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        started = Server(port)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"gunicorn exited:\n{tail(log)}"
            try:
                started.healthz(timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, f"gunicorn not ready:\n{tail(log)}"
                time.sleep(0.2)
        yield started
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # threads still held by a client (the old code): no grace
            proc.kill()
            proc.wait(10)


def status_of(sock: socket.socket) -> int:
    """The status code of the response on `sock` (its first line)."""
    received = b""
    while b"\r\n" not in received:
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError(f"closed before a status line: {received!r}")
        received += chunk
    return int(received.split(b" ", 2)[1])


def stalled_post(server: Server, path: str, *headers: str) -> socket.socket:
    """A POST announcing 1,000 bytes of body that sends 4 and then nothing."""
    sock = server.connect()
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: 1000"]
    sock.sendall(("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + b'{"ty')
    return sock


def test_slow_bodies_outnumbering_the_threads_do_not_keep_healthz_from_answering(server):
    # given: more stalled bodies than the worker has threads
    slow = [stalled_post(server, "/webhooks/provisioning/") for _ in range(THREADS + 2)]
    try:
        time.sleep(0.3)

        # when
        started = time.monotonic()
        status = server.healthz(timeout=10)
        waited = time.monotonic() - started

        # then: answered once the read timeout freed the threads, and each stalled body got 408
        assert status in (200, 503)  # whether the queue is up is not the point: that it answers is
        assert waited < READ_TIMEOUT + 4, f"/healthz took {waited:.1f} s"
        assert [status_of(sock) for sock in slow] == [408] * len(slow)
    finally:
        for sock in slow:
            sock.close()


def test_a_chunked_request_without_length_is_411(server):
    sock = server.connect()
    sock.sendall(
        b"POST /webhooks/provisioning/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n0\r\n\r\n'
    )

    assert status_of(sock) == 411
    sock.close()


def test_marketo_refuses_a_bad_token_without_waiting_for_the_body(server):
    sock = stalled_post(server, "/webhooks/marketo/", "Authorization: Bearer wrong")
    sock.settimeout(READ_TIMEOUT / 2)  # well before the read timeout would have answered

    assert status_of(sock) == 401
    sock.close()

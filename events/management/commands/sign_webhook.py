"""`manage.py sign_webhook FILE`: sign a JSON payload like the provisioning system does."""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from events.signatures import sign_standard_webhook


class Command(BaseCommand):
    help = (
        "Sign a provisioning webhook body (a JSON file, or - for standard input) with "
        "PROVISIONING_WEBHOOK_SECRET and print a ready-to-paste curl command; with --send, post it and "
        "print the engine's answer. The body is sent compact, exactly as signed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="Path of a JSON file with type, timestamp and data (- for stdin).")
        parser.add_argument("--url", default="http://127.0.0.1:8000/webhooks/provisioning/", help="Endpoint.")
        parser.add_argument("--id", dest="msg_id", help="webhook-id to use (default: a new random msg_… id).")
        parser.add_argument("--send", action="store_true", help="POST it now and print the response.")

    def handle(self, *args, file: str, url: str, msg_id: str | None, send: bool, **options) -> None:
        secret = settings.PROVISIONING_WEBHOOK_SECRET.split()
        if not secret:
            raise CommandError(
                "PROVISIONING_WEBHOOK_SECRET is not set. Run `make run` once (it writes .env) or export it."
            )
        body = self._read_body(file)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard_webhook(secret=secret[0], msg_id=msg_id, timestamp=timestamp, body=body),
        }
        if send:
            self._send(url, body, headers)
            return
        parts = ["curl", "-sS", "-i", "-X", "POST", url]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-binary", body]
        self.stdout.write(" ".join(shlex.quote(part) for part in parts))
        self.stderr.write("(valid for 5 minutes: the engine refuses timestamps older than 300 s)")

    def _read_body(self, file: str) -> str:
        try:
            text = self.stdin_text() if file == "-" else Path(file).read_text()
            return json.dumps(json.loads(text), separators=(",", ":"))
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON ({exc}); fix it or send it with curl yourself.") from exc

    @staticmethod
    def stdin_text() -> str:
        import sys

        return sys.stdin.read()

    def _send(self, url: str, body: str, headers: dict[str, str]) -> None:
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                self.stdout.write(f"{response.status} {response.read().decode()}")
        except urllib.error.HTTPError as exc:
            self.stdout.write(f"{exc.code} {exc.read().decode()}")
        except urllib.error.URLError as exc:
            raise CommandError(f"Could not reach {url}: {exc.reason}. Is `make run` running?") from exc

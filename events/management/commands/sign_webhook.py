"""`manage.py sign_webhook FILE`: sign a JSON payload like the provisioning system does."""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from events.webhook_client import (
    EngineUnreachable,
    SigningKeyMissing,
    provisioning_signing_key,
    signed_headers,
    webhook_post,
)


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
        try:
            key = provisioning_signing_key()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from exc
        body = self._read_body(file)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        headers = signed_headers(key=key, msg_id=msg_id, body=body)
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
        try:
            answer = webhook_post(url=url, body=body, headers=headers)
        except EngineUnreachable as exc:
            raise CommandError(f"{exc}. Is `make run` running?") from exc
        self.stdout.write(f"{answer.status} {answer.text}")

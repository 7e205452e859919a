"""`manage.py mail_sink`: a local SMTP server whose mails are read in the browser (development only)."""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a standalone dev tool: the engine's checks are not its business
    help = (
        "Development only. Receive every mail sent to an SMTP port and show it in the browser (list, text "
        "and HTML versions, raw .eml), keeping the most recent --limit messages in memory. Point the engine "
        "at it with EMAIL_URL=smtp://127.0.0.1:1025. Serves loopback clients without a login; to listen on "
        "another address set MAIL_SINK_PASSWORD (HTTP Basic, any user name). Ctrl-C stops it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
        parser.add_argument("--smtp-port", type=int, default=1025, help="SMTP port (default 1025).")
        parser.add_argument("--http-port", type=int, default=8025, help="Port of the web pages (default 8025).")
        parser.add_argument("--limit", type=int, default=1000, help="Messages kept in memory (default 1000).")

    def handle(self, *args, host: str, smtp_port: int, http_port: int, limit: int, **options) -> None:
        try:
            from emulators.mailsink import MailSink
        except ImportError as exc:  # aiosmtpd is a development dependency
            raise CommandError(f"{exc}: install the development extras (pip install '.[dev]').") from exc
        try:
            sink = MailSink(
                host=host,
                smtp_port=smtp_port,
                http_port=http_port,
                password=os.environ.get("MAIL_SINK_PASSWORD") or None,
                limit=limit,
            ).start()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host} (SMTP {smtp_port}, HTTP {http_port}): {exc}") from exc
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
        self.stdout.write(f"Mail sink: SMTP on {sink.email_url}, mails at {sink.web_url}")
        self.stdout.write(f"  export EMAIL_URL={sink.email_url}")
        self.stdout.write("Ctrl-C stops it.")
        self.stdout.flush()
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sink.stop()
            self.stdout.write("Mail sink stopped.")

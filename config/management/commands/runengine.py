"""`manage.py runengine`: the web server, the django-q2 cluster and the timer loop together, stopped together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the engine for development: Django's web server, the django-q2 task cluster and the trigger "
        "timer loop (fire_timers) as child processes. Ctrl-C (or SIGTERM) stops them all; if one exits, the "
        "others are stopped too."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Address for the web server.")

    def handle(self, *args, addr: str, **options) -> None:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            subprocess.Popen([*manage, "runserver", addr, "--noreload"]),
            subprocess.Popen([*manage, "qcluster"]),
            subprocess.Popen([*manage, "fire_timers"]),
        ]
        self.stdout.write(
            f"Lifecycle Engine on http://{addr}/ (admin at /admin/, webhooks at /webhooks/…); "
            f"task broker: {settings.Q_BROKER}. Ctrl-C stops all."
        )
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        self._stop(children)

    def _stop(self, children: list[subprocess.Popen]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self.stdout.write("Stopped web server, task cluster and timer loop.")

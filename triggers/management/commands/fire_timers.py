"""`manage.py fire_timers`: the trigger timers fired as they come due, in a process of its own."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from triggers.timers import IDLE_MAX_SECONDS, timers_loop


class Command(BaseCommand):
    help = (
        "Fire trigger timers (stalls, silences, dates, follow-ups, quiet-hours releases) within about a second "
        "of their due time: a loop that sweeps batch after batch while timers are due and sleeps until the next "
        "one otherwise. Run one or more beside the task cluster (their claims never overlap); the cluster's "
        "every-minute sweep remains the safety net. SIGTERM or Ctrl-C stops it after the batch in hand."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=200, help="Timers claimed per batch (one transaction).")
        parser.add_argument(
            "--idle-max", type=float, default=IDLE_MAX_SECONDS, help="Longest sleep between looks, in seconds."
        )

    def handle(self, *args, limit: int, idle_max: float, **options) -> None:
        if limit < 1 or idle_max <= 0:
            self.stderr.write("--limit must be at least 1 and --idle-max above 0.")
            raise SystemExit(2)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"Firing trigger timers as they come due (batches of {limit}); SIGTERM stops.")
        report = timers_loop(stop=stop, limit=limit, idle_max=idle_max)
        self.stdout.write(
            f"Stopped: {report.sweeps} sweeps, {report.claimed} timers, {report.firings} firings, "
            f"{report.errors} failed sweeps."
        )

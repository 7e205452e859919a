"""`manage.py replay`: re-fold workspaces from the event cache, report drift, optionally repair it."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand

from events.models import Event
from events.services import enqueue_workspaces
from processing.replay import ReplayReport, replay
from workspaces.lifecycle import LIFECYCLE_TYPES


class Command(BaseCommand):
    help = (
        "Re-fold every workspace (or one, with --workspace) from the stored events and compare the result "
        "with the stored workspace records. Read-only unless --repair, which queues the drifted workspaces "
        "for reprocessing by the task cluster (make sure `qcluster` runs). Shows progress and an ETA on stderr."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--workspace", help="Replay only this workspace_id.")
        parser.add_argument("--repair", action="store_true", help="Queue every drifted workspace for reprocessing.")
        parser.add_argument("--show", type=int, default=20, help="How many drifted workspaces to list (default 20).")

    def handle(self, *args, workspace: str | None, repair: bool, show: int, **options) -> None:
        total = Event.objects.filter(type__in=LIFECYCLE_TYPES).count() if not workspace else 0
        started = time.monotonic()

        def progress(report: ReplayReport) -> None:
            if not total:
                return
            elapsed = time.monotonic() - started
            rate = report.events / elapsed if elapsed else 0
            eta = (total - report.events) / rate if rate else 0
            sys.stderr.write(
                f"\r{report.events:,}/{total:,} events, {report.workspaces:,} workspaces, "
                f"{rate:,.0f} events/s, ETA {eta:,.0f}s   "
            )
            sys.stderr.flush()

        report = replay(workspace_key=workspace, progress=progress)
        if total:
            sys.stderr.write("\n")
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Replayed {report.events:,} events over {report.workspaces:,} workspaces in {elapsed:,.1f}s: "
            f"{len(report.mismatches)} differ, {len(report.missing)} missing, {report.unreadable} unreadable."
        )
        for workspace_id in report.drifted[:show]:
            fields = report.mismatches.get(workspace_id)
            detail = (
                "; ".join(f"{k}: stored {v[0]!r} ≠ folded {v[1]!r}" for k, v in fields.items())
                if fields
                else "no record"
            )
            self.stdout.write(f"  {workspace_id}: {detail}")
        if repair and report.drifted:
            enqueue_workspaces(workspace_keys=report.drifted, force=True)
            self.stdout.write(self.style.SUCCESS(f"Queued {len(report.drifted)} workspace(s) for reprocessing."))
        elif report.drifted:
            self.stdout.write("Run again with --repair to queue them for reprocessing.")

"""`manage.py reconcile_billing`: compare Stripe's subscriptions with the engine, per workspace and field."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from sync.billing import BillingReport, billing_reconcile
from sync.stripe_billing import StripeBillingError


class Command(BaseCommand):
    help = (
        "Read every subscription from Stripe (STRIPE_API_BASE, STRIPE_API_KEY) and compare it with the engine's "
        "workspaces: status, plan, MRR, currency, subscription id, billing interval and renewal date. Lists "
        "subscriptions whose metadata.workspace_id the engine does not know, and workspaces whose subscription "
        "Stripe does not have. --repair stores the corrective lifecycle events (source stripe, idempotent: a "
        "second run over the same drift stores nothing) and queues their processing; workspace fields are never "
        "patched directly. Shows progress and an ETA on stderr."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repair", action="store_true", help="Store corrective events for the drift found.")
        parser.add_argument("--show", type=int, default=5, help="Workspaces to list per field (default 5).")

    def handle(self, *args, repair: bool, show: int, **options) -> None:
        started = time.monotonic()

        def progress(done: int, estimate: int) -> None:
            elapsed = time.monotonic() - started
            eta = (estimate - done) * elapsed / done if done else 0
            self.stderr.write(f"\r{done:,}/~{estimate:,} Stripe subscriptions read, ETA {eta:,.0f}s   ", ending="")
            self.stderr.flush()

        try:
            report = billing_reconcile(repair=repair, progress=progress)
        except StripeBillingError as exc:
            raise CommandError(f"{exc} Then run again.") from exc
        self.stderr.write("")
        self._print(report, show)
        if repair:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Stored {len(report.stored)} corrective event(s) ({len(report.already_stored)} already stored "
                    "by an earlier run); their processing is queued."
                )
            )
            for external_id, fields in sorted(report.invalid.items()):
                self.stdout.write(self.style.WARNING(f"  not stored, {external_id}: {fields}"))
        elif report.drifts:
            self.stdout.write("Run again with --repair to store the corrective events.")

    def _print(self, report: BillingReport, show: int) -> None:
        drifted = report.drifted_workspaces
        self.stdout.write(
            f"Read {report.subscriptions:,} Stripe subscriptions; compared {report.checked:,} workspaces: "
            f"{len(drifted)} drifted."
        )
        for name, drifts in sorted(report.by_field().items()):
            examples = "; ".join(
                f"{d.workspace_id} (engine {d.engine or '-'}, Stripe {d.stripe or '-'})" for d in drifts[:show]
            )
            self.stdout.write(f"  {name}: {len(drifts)} differ, e.g. {examples}")
        for subscription_id, workspace_id, status in report.unknown[:show]:
            self.stdout.write(f"  unknown workspace {workspace_id}: Stripe subscription {subscription_id} ({status})")
        if len(report.unknown) > show:
            self.stdout.write(f"  … {len(report.unknown) - show} more subscriptions naming unknown workspaces")
        for workspace_id, subscription_id in report.missing[:show]:
            self.stdout.write(f"  missing in Stripe: {workspace_id} points at {subscription_id}")
        if report.unlabelled:
            self.stdout.write(f"  {len(report.unlabelled)} subscription(s) carry no metadata.workspace_id")

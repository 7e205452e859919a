"""`manage.py reconcile_billing`: compare Stripe's subscriptions with the engine, per workspace and field."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from billing.reconcile import COMPARE, READ, BillingReport, billing_reconcile
from billing.stripe_adapter import StripeBillingError

PROGRESS_EVERY = 0.5  # seconds between progress lines
LINES = {READ: "{done:,}/~{total:,} Stripe subscriptions read", COMPARE: "{done:,}/{total:,} workspaces compared"}


class _Progress:
    """One stderr line per stage, rewritten at most every PROGRESS_EVERY seconds, with an ETA; a stage's
    first and last counts are always shown, so a run that read nothing says so."""

    def __init__(self, stream) -> None:
        self.stream, self.stage, self.started, self.shown = stream, "", 0.0, 0.0
        self.last: tuple[int, int] = (0, 0)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage:
            if self.stage:
                self._write(*self.last, now, end="\n")
            self.stage, self.started = stage, now
        self.last = (done, total)
        if done == 0 or done >= total or now - self.shown >= PROGRESS_EVERY:
            self._write(done, total, now, end="\n" if stage == COMPARE and done >= total else "")

    def _write(self, done: int, total: int, now: float, *, end: str) -> None:
        self.shown = now
        eta = f"ETA {(total - done) * (now - self.started) / done:,.0f}s" if done else "ETA unknown"
        self.stream.write(f"\r{LINES[self.stage].format(done=done, total=total)}, {eta}   ", ending=end)
        self.stream.flush()


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
        parser.add_argument(
            "--show",
            type=int,
            default=5,
            help="Examples to list per field, and per list of unknown or missing (default 5).",
        )

    def handle(self, *args, repair: bool, show: int, **options) -> None:
        progress = _Progress(self.stderr)
        try:
            report = billing_reconcile(repair=repair, progress=progress)
        except StripeBillingError as exc:
            raise CommandError(f"{exc} Then run again.") from exc
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
            f"{report.wrong:,} wrong ({len(drifted):,} drifted, {len(report.missing):,} missing in Stripe, "
            f"{len(report.unknown):,} naming a workspace the engine does not know, {len(report.unlabelled):,} "
            "without metadata.workspace_id)."
        )
        for name, drifts in sorted(report.by_field().items()):
            examples = "; ".join(
                f"{d.workspace_id} (engine {d.engine or '-'}, Stripe {d.stripe or '-'})" for d in drifts[:show]
            )
            self.stdout.write(f"  {name}: {len(drifts)} differ, e.g. {examples}")
        if report.unknown:
            self.stdout.write(
                f"  {len(report.unknown):,} Stripe subscription(s) name a workspace the engine does not know:"
            )
        for subscription_id, workspace_id, status in report.unknown[:show]:
            self.stdout.write(f"    {workspace_id}: Stripe subscription {subscription_id} ({status})")
        self._more(len(report.unknown), show)
        if report.missing:
            missing = len(report.missing)
            self.stdout.write(
                f"  {missing:,} workspace(s) point at a subscription Stripe does not have (missing in Stripe):"
            )
        for workspace_id, subscription_id in report.missing[:show]:
            self.stdout.write(f"    {workspace_id} points at {subscription_id}")
        self._more(len(report.missing), show)
        if report.unlabelled:
            examples = ", ".join(report.unlabelled[:show])
            self.stdout.write(
                f"  {len(report.unlabelled):,} subscription(s) carry no metadata.workspace_id, e.g. {examples}"
            )
        if not report.wrong:
            self.stdout.write(self.style.SUCCESS("All clear: Stripe and the engine agree on every subscription."))

    def _more(self, count: int, show: int) -> None:
        if count > show:
            self.stdout.write(f"    … and {count - show:,} more (--show {count} lists them all)")

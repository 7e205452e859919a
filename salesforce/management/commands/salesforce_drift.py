"""`manage.py salesforce_drift`: compare the engine with Salesforce, per object and field."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from salesforce.adapter import SalesforceCallError, shared_client
from salesforce.drift import NOT_SENT_LABELS, DriftReport, salesforce_drift
from salesforce.repair import RepairPlan, drift_repair


class Command(BaseCommand):
    help = (
        "Count every Account, Lead, Contact and Workspace__c the engine means Salesforce to have, and say how "
        "many are in sync, drifted, held outside the pilot, pending or failed. Synced ones are read back by "
        "Lifecycle_Engine_ID__c: records missing in Salesforce and fields that differ from what the engine last "
        "sent are listed per object and field, engine value against Salesforce value. --repair queues them to be "
        "sent again: missing records are re-created and what looks them up follows them; converted leads are "
        "left alone (Salesforce refuses changes to them). Uses the SALESFORCE_* settings; shows progress and an "
        "ETA on stderr."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--repair",
            action="store_true",
            help="Queue the drifted records to be sent again, in dependency order (the drainer sends them).",
        )
        parser.add_argument("--show", type=int, default=5, help="Examples to list per field and state (default 5).")

    def handle(self, *args, repair: bool, show: int, **options) -> None:
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            elapsed = time.monotonic() - started
            eta = f"ETA {(total - done) * elapsed / done:,.0f}s" if done else "ETA unknown"
            self.stderr.write(f"\r{done:,}/{total:,} synced records read back from Salesforce, {eta}   ", ending="")
            self.stderr.flush()

        try:
            report = salesforce_drift(client=shared_client(), progress=progress)
        except SalesforceCallError as exc:
            raise CommandError(
                f"Salesforce answered {exc.code}: {exc.message}. Check SALESFORCE_INSTANCE_URL and the credentials "
                "(python manage.py check), then run again."
            ) from exc
        self.stderr.write("")
        self._print(report, show)
        if repair and report.drifted:
            self._print_repair(drift_repair(report=report), report, show)
        elif report.drifted:
            self.stdout.write("Run again with --repair to send them again.")

    def _print(self, report: DriftReport, show: int) -> None:
        unsent = ", ".join(f"{group.count:,} {name}" for name, group in report.not_sent.items() if group.count)
        self.stdout.write(
            f"Salesforce should hold {report.expected:,} records: {report.in_sync:,} in sync, "
            f"{report.drifted:,} drifted (of {report.checked:,} checked), {report.unsent:,} not sent"
            + (f" ({unsent})." if unsent else ".")
        )
        for object_type, external_ids in sorted(report.missing.items()):
            self.stdout.write(
                f"  {object_type}: {len(external_ids)} missing in Salesforce, e.g. {', '.join(external_ids[:show])}"
            )
        for object_type, fields in sorted(report.mismatches.items()):
            for name, diffs in sorted(fields.items()):
                examples = "; ".join(
                    f"{d.external_id} (engine {d.engine}, Salesforce {d.salesforce})" for d in diffs[:show]
                )
                count = report.diff_counts[(object_type, name)]
                self.stdout.write(f"  {object_type}.{name}: {count} differ, e.g. {examples}")
        for name, group in report.not_sent.items():
            if group.count:
                examples = ", ".join(group.examples[:show])
                self.stdout.write(f"  {NOT_SENT_LABELS[name]}: {group.count:,}, e.g. {examples}")
        if report.all_clear:
            self.stdout.write(self.style.SUCCESS("All clear: Salesforce holds every record as the engine sent it."))

    def _print_repair(self, plan: RepairPlan, report: DriftReport, show: int) -> None:
        reasons = f"{len(plan.drifted)} drifted"
        if plan.dependents:
            why = list(plan.dependents.values())
            reasons += (
                f", {len(why)} that look up a record being re-created (its new Id replaces the old one), "
                f"e.g. {'; '.join(why[:show])}"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Queued {plan.queued} record(s) to be sent again ({reasons}): missing records are re-created first, "
                "then what looks them up."
            )
        )
        if plan.converted:
            self.stdout.write(
                self.style.WARNING(
                    f"Left alone: {len(plan.converted)} converted lead(s), e.g. {', '.join(plan.converted[:show])}. "
                    "Salesforce refuses changes to a converted lead and cannot re-create one; restore a deleted one "
                    "from Salesforce's recycle bin."
                )
            )

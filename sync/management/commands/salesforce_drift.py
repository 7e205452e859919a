"""`manage.py salesforce_drift`: compare the engine with Salesforce, per object and field."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from sync.drift import salesforce_drift
from sync.salesforce import SalesforceCallError, shared_client
from sync.worker import outbox_retry


class Command(BaseCommand):
    help = (
        "Read back every synced Account, Lead, Contact and Workspace__c from Salesforce by Lifecycle_Engine_ID__c "
        "and report records missing there and fields that differ from what the engine last sent, per object and "
        "field. --repair queues the drifted records to be sent again. Uses the SALESFORCE_* settings; shows "
        "progress and an ETA on stderr."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repair", action="store_true", help="Queue every drifted record to be sent again.")
        parser.add_argument("--show", type=int, default=5, help="External ids to list per field (default 5).")

    def handle(self, *args, repair: bool, show: int, **options) -> None:
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            elapsed = time.monotonic() - started
            eta = (total - done) * elapsed / done if done else 0
            sys.stderr.write(f"\r{done:,}/{total:,} records checked, ETA {eta:,.0f}s   ")
            sys.stderr.flush()

        try:
            report = salesforce_drift(client=shared_client(), progress=progress)
        except SalesforceCallError as exc:
            raise CommandError(
                f"Salesforce answered {exc.code}: {exc.message}. Check SALESFORCE_INSTANCE_URL and the credentials "
                "(python manage.py check), then run again."
            ) from exc
        sys.stderr.write("\n")
        drifted = len(report.item_ids)
        self.stdout.write(f"Checked {report.checked:,} records: {drifted} drifted.")
        for object_type, external_ids in sorted(report.missing.items()):
            self.stdout.write(
                f"  {object_type}: {len(external_ids)} missing in Salesforce, e.g. {', '.join(external_ids[:show])}"
            )
        for object_type, fields in sorted(report.mismatches.items()):
            for name, external_ids in sorted(fields.items()):
                self.stdout.write(
                    f"  {object_type}.{name}: {len(external_ids)} differ, e.g. {', '.join(external_ids[:show])}"
                )
        if repair and drifted:
            queued = outbox_retry(item_ids=report.to_resend)
            self.stdout.write(self.style.SUCCESS(f"Queued {queued} record(s) to be sent again."))
        elif drifted:
            self.stdout.write("Run again with --repair to send them again.")

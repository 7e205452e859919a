"""`manage.py privacy`: data requests (export, erase), payload retention, roles. See docs/privacy.md."""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from privacy.erasure import ErasureInvalid
from privacy.identity import email_hash, normalise_email
from privacy.retention import RetentionReport
from privacy.roles import groups_sync
from privacy.services import data_request_carry_out, data_request_create, retention_run


class Command(BaseCommand):
    help = (
        "Privacy operations (docs/privacy.md). "
        "`export EMAIL` prints (or writes) everything held about a person as JSON; "
        "`erase EMAIL` anonymises their records, scrubs every mention, anonymises or deletes them in Salesforce "
        "through the outbox and keeps a salted-hash tombstone so later events naming them are suppressed; "
        "`retention` cuts the payloads of settled events older than EVENT_PAYLOAD_RETENTION_DAYS; "
        "`groups` sets the Lifecycle admins, Reps and Auditors groups to their permissions; "
        "`hash EMAIL` prints the salted hash that requests and tombstones are filed under. "
        "Every export and erasure is recorded as a data request with who asked and when."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{export,erase,retention,groups,hash}")
        export = sub.add_parser("export", help="Everything held about EMAIL, as JSON.")
        export.add_argument("email")
        export.add_argument("--output", type=Path, help="Write the JSON here instead of standard output.")
        self._requester(export)
        erase = sub.add_parser("erase", help="Erase EMAIL: anonymise, scrub, tell Salesforce, tombstone.")
        erase.add_argument("email")
        erase.add_argument("--yes", action="store_true", help="Do not ask for confirmation (needed without a TTY).")
        self._requester(erase)
        retention = sub.add_parser("retention", help="Scrub settled payloads past EVENT_PAYLOAD_RETENTION_DAYS.")
        retention.add_argument("--dry-run", action="store_true", help="Only count what is due.")
        retention.add_argument("--batch-size", type=int, default=500, help="Events per transaction (default 500).")
        sub.add_parser("groups", help="Create the three groups and set their permissions (privacy/roles.py).")
        digest = sub.add_parser("hash", help="The salted hash of EMAIL (find its requests and tombstone).")
        digest.add_argument("email")

    @staticmethod
    def _requester(parser: CommandParser) -> None:
        parser.add_argument("--by", metavar="USERNAME", help="The user who asked (default: your OS login name).")
        parser.add_argument("--note", default="", help="Ticket or reference, e.g. 'DSR-1234' (never personal data).")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"handle_{action}")(**options)
        except ErasureInvalid as exc:
            raise CommandError(str(exc)) from exc

    # --- data requests --------------------------------------------------------------------------

    def _create(self, kind: str, email: str, by: str | None, note: str):
        user = None
        if by:
            user = get_user_model().objects.filter(username=by).first()
            if user is None:
                raise CommandError(f"--by: no user named {by!r}.")
        return data_request_create(
            kind=kind, email=email, requested_by=user, requested_by_name=f"os:{getpass.getuser()}", note=note
        )

    def handle_export(self, *, email: str, output: Path | None, by: str | None, note: str, **options) -> None:
        data_request = self._create("export", email, by, note)
        document = data_request_carry_out(data_request=data_request)
        text = json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
        if output:
            output.write_text(text + "\n")
            found = ", ".join(f"{k} {v}" for k, v in data_request.summary["found"].items() if v) or "nothing"
            self.stderr.write(f"{data_request}: wrote {output} ({found}).")
        else:
            self.stdout.write(text)

    def handle_erase(self, *, email: str, yes: bool, by: str | None, note: str, **options) -> None:
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("Erasure cannot be undone: pass --yes to confirm without a terminal.")
            answer = input(f"Erase {normalise_email(email)} for good? Type 'erase' to confirm: ")
            if answer.strip() != "erase":
                raise CommandError("Not confirmed; nothing changed.")
        data_request = self._create("erase", email, by, note)
        data_request_carry_out(data_request=data_request)
        self.stdout.write(self.style.SUCCESS(f"{data_request} done: {data_request.summary}"))

    def handle_hash(self, *, email: str, **options) -> None:
        self.stdout.write(email_hash(email))

    # --- retention and roles --------------------------------------------------------------------

    def handle_retention(self, *, dry_run: bool, batch_size: int, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        started = time.monotonic()

        def progress(report: RetentionReport) -> None:
            elapsed = time.monotonic() - started
            rate = report.scrubbed / elapsed if elapsed else 0
            eta = (report.due - report.scrubbed) / rate if rate else 0
            self.stderr.write(
                f"\r{report.scrubbed:,}/{report.due:,} events, {rate:,.0f}/s, ETA {eta:,.0f}s   ", ending=""
            )
            self.stderr.flush()

        report = retention_run(dry_run=dry_run, batch_size=batch_size, progress=progress)
        if report.cutoff is None:
            self.stdout.write("EVENT_PAYLOAD_RETENTION_DAYS is 0: payloads are kept; nothing to do.")
            return
        if report.scrubbed:
            self.stderr.write("")
        verb = "would scrub" if dry_run else "scrubbed"
        self.stdout.write(
            f"Settled events received before {report.cutoff:%Y-%m-%d %H:%M}Z: {report.due:,} due, "
            f"{verb} {report.due if dry_run else report.scrubbed:,} in {time.monotonic() - started:,.1f}s."
        )

    def handle_groups(self, **options) -> None:
        counts = groups_sync(group_model=Group, permission_model=Permission)
        for name, count in counts.items():
            self.stdout.write(f"{name}: {count} permission(s)")

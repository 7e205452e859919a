"""`manage.py trigger_definitions load|dump|check`: a definitions file's triggers section alone.

`manage.py behaviour_definitions` takes the whole file (cohorts, stages and triggers in one transaction);
this command reads and writes only `{"format": 1, "triggers": [...]}`, ignoring other sections."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from triggers.definitions import TriggersInvalid, triggers_dump, triggers_load, triggers_validate
from usage.definition_files import document_read, document_write, invalid_error, load_report_write


class Command(BaseCommand):
    help = (
        "Keep triggers in a versioned file (e.g. in git): the triggers section of the definitions file alone "
        "(behaviour_definitions takes cohorts, stages and triggers together). `dump [FILE]` writes every "
        "trigger (to stdout without FILE); `load FILE` creates or updates the triggers in FILE — a changed "
        "behaviour gets the next version, triggers not in FILE are left alone, other sections are ignored; "
        "`check FILE` validates FILE and changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("load", "dump", "check"), help="What to do.")
        parser.add_argument("file", nargs="?", help="The JSON file (load, check: required; dump: default stdout).")
        parser.add_argument("--dry-run", action="store_true", help="load: say what would change, change nothing.")

    def handle(self, *args, action: str, file: str | None, dry_run: bool, **options) -> None:
        if action == "dump":
            document_write(self, triggers_dump(), file)
            return
        document = document_read(file)
        try:
            if action == "check":
                triggers_validate(document)
                self.stdout.write(f"{file}: valid.")
                return
            report = triggers_load(document, dry_run=dry_run)
        except TriggersInvalid as exc:
            raise invalid_error(exc.errors) from exc
        rows = (
            ("created", report.created),
            ("given a new version", report.new_versions),
            ("updated (name or description)", report.updated),
        )
        load_report_write(self, rows, len(report.unchanged), dry_run=dry_run)

"""`manage.py behaviour_definitions load|dump|check`: cohorts, stages and triggers to and from one file."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from usage.definition_files import document_read, document_write, invalid_error, load_report_write
from usage.definitions import SHIPPED, DefinitionsInvalid, definitions_dump, definitions_load, definitions_validate


class Command(BaseCommand):
    help = (
        "Keep cohort, stage and trigger definitions in one versioned file (e.g. in git). "
        "`dump [FILE]` writes every definition (to stdout without FILE); `load FILE` creates or updates the "
        "definitions in FILE in one transaction — a changed condition or behaviour gets the next version and "
        "members are re-evaluated on the next sweep, definitions not in FILE are left alone; `check FILE` "
        "validates FILE and changes nothing. `load --shipped` restores the engine's shipped defaults "
        "(usage/shipped/default.json; its triggers come back disabled)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("load", "dump", "check"), help="What to do.")
        parser.add_argument("file", nargs="?", help="The JSON file (load, check: required; dump: default stdout).")
        parser.add_argument("--shipped", action="store_true", help="load/check: use the shipped defaults.")
        parser.add_argument("--dry-run", action="store_true", help="load: say what would change, change nothing.")

    def handle(self, *args, action: str, file: str | None, shipped: bool, dry_run: bool, **options) -> None:
        if action == "dump":
            document_write(self, definitions_dump(), file)
            return
        missing = "Name the file to load or check (or pass --shipped)."
        document = document_read(SHIPPED if shipped else file, missing=missing)
        try:
            if action == "check":
                definitions_validate(document)
                self.stdout.write(f"{file or SHIPPED}: valid.")
                return
            report = definitions_load(document, dry_run=dry_run)
        except DefinitionsInvalid as exc:
            raise invalid_error(exc.errors) from exc
        rows = (
            ("created", report.created),
            ("given a new version", report.new_versions),
            ("updated (words, order or a cohort's or stage's enabled)", report.updated),
            ("disabled", report.disabled),
        )
        load_report_write(self, rows, len(report.unchanged), dry_run=dry_run)

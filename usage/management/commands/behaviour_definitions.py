"""`manage.py behaviour_definitions load|dump|check`: cohort and stage definitions to and from a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from usage.definitions import SHIPPED, DefinitionsInvalid, definitions_dump, definitions_load, definitions_validate


class Command(BaseCommand):
    help = (
        "Keep cohort and stage definitions in a versioned file (e.g. in git). "
        "`dump [FILE]` writes every definition (to stdout without FILE); `load FILE` creates or updates the "
        "definitions in FILE — a changed condition gets the next version and members are re-evaluated on "
        "the next sweep, definitions not in FILE are left alone; `check FILE` validates FILE and changes "
        "nothing. `load --shipped` restores the engine's shipped defaults (usage/shipped/default.json)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("load", "dump", "check"), help="What to do.")
        parser.add_argument("file", nargs="?", help="The JSON file (load, check: required; dump: default stdout).")
        parser.add_argument("--shipped", action="store_true", help="load/check: use the shipped defaults.")
        parser.add_argument("--dry-run", action="store_true", help="load: say what would change, change nothing.")

    def handle(self, *args, action: str, file: str | None, shipped: bool, dry_run: bool, **options) -> None:
        if action == "dump":
            text = json.dumps(definitions_dump(), indent=2, ensure_ascii=False) + "\n"
            if file:
                Path(file).write_text(text)
                self.stderr.write(f"Wrote {file}.")
            else:
                sys.stdout.write(text)
            return
        document = self._read(SHIPPED if shipped else file)
        try:
            if action == "check":
                definitions_validate(document)
                self.stdout.write(f"{file or SHIPPED}: valid.")
                return
            report = definitions_load(document, dry_run=dry_run)
        except DefinitionsInvalid as exc:
            lines = "\n".join(f"  {path}: {' '.join(messages)}" for path, messages in exc.errors.items())
            raise CommandError(f"Nothing was changed; fix these and load again:\n{lines}") from exc
        prefix = "Would have " if dry_run else ""
        for title, labels in (
            ("created", report.created),
            ("given a new version", report.new_versions),
            ("updated (name, description, order or enabled)", report.updated),
            ("disabled", report.disabled),
        ):
            if labels:
                self.stdout.write(f"{prefix}{title}: {', '.join(labels)}")
        self.stdout.write(f"{len(report.unchanged)} unchanged.")

    def _read(self, file: str | Path | None) -> object:
        if file is None:
            raise CommandError("Name the file to load or check (or pass --shipped).")
        try:
            return json.loads(Path(file).read_text())
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}.") from exc

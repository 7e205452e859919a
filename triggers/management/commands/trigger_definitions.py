"""`manage.py trigger_definitions load|dump|check`: triggers to and from a versioned file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from triggers.definitions import TriggersInvalid, triggers_dump, triggers_load, triggers_validate


class Command(BaseCommand):
    help = (
        "Keep triggers in a versioned file (e.g. in git). `dump [FILE]` writes every trigger (to stdout "
        "without FILE); `load FILE` creates or updates the triggers in FILE — a changed behaviour gets the "
        "next version, triggers not in FILE are left alone; `check FILE` validates FILE and changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("load", "dump", "check"), help="What to do.")
        parser.add_argument("file", nargs="?", help="The JSON file (load, check: required; dump: default stdout).")
        parser.add_argument("--dry-run", action="store_true", help="load: say what would change, change nothing.")

    def handle(self, *args, action: str, file: str | None, dry_run: bool, **options) -> None:
        if action == "dump":
            text = json.dumps(triggers_dump(), indent=2, ensure_ascii=False) + "\n"
            if file:
                Path(file).write_text(text)
                self.stderr.write(f"Wrote {file}.")
            else:
                sys.stdout.write(text)
            return
        document = self._read(file)
        try:
            if action == "check":
                triggers_validate(document)
                self.stdout.write(f"{file}: valid.")
                return
            report = triggers_load(document, dry_run=dry_run)
        except TriggersInvalid as exc:
            lines = "\n".join(f"  {path}: {' '.join(messages)}" for path, messages in exc.errors.items())
            raise CommandError(f"Nothing was changed; fix these and load again:\n{lines}") from exc
        prefix = "Would have " if dry_run else ""
        for title, labels in (
            ("created", report.created),
            ("given a new version", report.new_versions),
            ("updated (name or description)", report.updated),
        ):
            if labels:
                self.stdout.write(f"{prefix}{title}: {', '.join(labels)}")
        self.stdout.write(f"{len(report.unchanged)} unchanged.")

    def _read(self, file: str | None) -> object:
        if file is None:
            raise CommandError("Name the file to load or check.")
        try:
            return json.loads(Path(file).read_text())
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}.") from exc

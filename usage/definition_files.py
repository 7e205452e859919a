"""Definitions kept in a versioned JSON file: what the `behaviour_definitions` and `trigger_definitions`
commands share (reading the file, writing a dump, reporting a load or why nothing was loaded)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


def document_read(file: str | Path | None, *, missing: str = "Name the file to load or check.") -> object:
    """The file's JSON, or a CommandError that says what is wrong with the file."""
    if file is None:
        raise CommandError(missing)
    try:
        return json.loads(Path(file).read_text())
    except OSError as exc:
        raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(f"{file} is not valid JSON: {exc}.") from exc


def document_write(command: BaseCommand, document: object, file: str | None) -> None:
    """Write a dump to FILE (saying so on stderr) or to stdout."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if file:
        Path(file).write_text(text)
        command.stderr.write(f"Wrote {file}.")
    else:
        sys.stdout.write(text)


def invalid_error(errors: dict[str, list[str]]) -> CommandError:
    """Every problem by its path: nothing was loaded."""
    lines = "\n".join(f"  {path}: {' '.join(messages)}" for path, messages in errors.items())
    return CommandError(f"Nothing was changed; fix these and load again:\n{lines}")


def load_report_write(
    command: BaseCommand, rows: Iterable[tuple[str, Sequence[str]]], unchanged: int, *, dry_run: bool
) -> None:
    """What a load did (or would have done), a line per kind of change, then how many were unchanged."""
    prefix = "Would have " if dry_run else ""
    for title, labels in rows:
        if labels:
            command.stdout.write(f"{prefix}{title}: {', '.join(labels)}")
    command.stdout.write(f"{unchanged} unchanged.")

"""Notices for the admins from the low layers (a dead letter, a paused sync, billing drift).

The apps that notice such things sit below `alerts` and may not import it; they raise a notice here and
the alerts app, at ready, registers the sink that turns each one into an alert (deduplicated by its key,
routed and delivered like any other). Without a sink (alerts not installed) a notice is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    rule: str
    dedupe_key: str
    title: str
    reason: str
    workspace_key: str = ""
    context: dict[str, Any] = field(default_factory=dict)


_sinks: list[Callable[[Notice], object]] = []


def notice_sink_set(sink: Callable[[Notice], object]) -> None:
    """The one sink (the alerts app's); set again at every app ready, so it is replaced, not repeated."""
    _sinks[:] = [sink]


def notice_raise(
    *, rule: str, dedupe_key: str, title: str, reason: str, workspace_key: str = "", context: dict | None = None
) -> None:
    """Hand a notice to the sink, in the caller's transaction (an alert is raised with what caused it)."""
    notice = Notice(rule, dedupe_key, title, reason, workspace_key, context or {})
    if not _sinks:
        logger.warning("notice %s (%s) with no sink: %s", rule, dedupe_key, title)
        return
    _sinks[0](notice)

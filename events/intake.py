"""Filters every event passes on its way into the store, registered by the apps above the inbox.

The inbox may not import them (it is the second-lowest layer), so they register here at app ready: the
privacy app's suppression (events naming an erased person are stored suppressed and scrubbed) is the
one there is. A filter takes the batch about to be stored and returns it as it is to be stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from events.store import NewEvent

IntakeFilter = Callable[[Sequence[NewEvent]], list[NewEvent]]

_filters: dict[str, IntakeFilter] = {}


def intake_filter_register(name: str, intake_filter: IntakeFilter) -> None:
    """Add (or, under the same name, replace) a filter: registering again at every ready is harmless."""
    _filters[name] = intake_filter


def intake_filters() -> tuple[str, ...]:
    """The names registered, in order (for the system check and the tests)."""
    return tuple(_filters)


def intake_filtered(events: Sequence[NewEvent]) -> Sequence[NewEvent]:
    """The events as they are to be stored, after every registered filter."""
    for intake_filter in _filters.values():
        events = intake_filter(events)
    return events

"""The engine's webhook with its store left out: `bench/ingest.py --phases ceiling` serves this module.

Every step of a signed single event runs as deployed (the middleware's fast path, the signature check,
the rate limit, the validation, the 202 answer) except the one that stores it: the event is answered as
new without a row, a commit or a doorbell. Its rate over the raw inserts is the most engine ÷ raw can be
on the machine of the run, whatever the store costs; never served outside the benchmark.
"""

from __future__ import annotations

from importlib import import_module

from config.wsgi import application

__all__ = ["application"]


def _answered_unstored(*, event: object) -> bool:
    return True


# Only now that config.wsgi has set Django up can the views be imported.
import_module("events.views").event_receive = _answered_unstored

"""django-q2 task entry points: take ids, load, call a service (STYLE habit 5)."""

from __future__ import annotations


def process_workspaces(workspace_keys: list[str]) -> None:
    """Fold each workspace's events into its state. The processor arrives with issue 3; until then
    events stay `new` in the cache, which is exactly where the sweeper will find them."""

"""The operations dashboard's permission: ops keeps no data of its own, it reads the others'."""

from __future__ import annotations

from failures.models import Heartbeat


class Dashboard(Heartbeat):
    """Only the "view" permission of the /ops/ page, so roles grant it like any model's. A proxy (of a
    small table) rather than a model without a table: code that walks every model can still query it."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = "operations dashboard"

    def __str__(self) -> str:
        return "Operations dashboard"

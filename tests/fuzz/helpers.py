"""What the fuzz tests assert besides schemathesis' own checks."""

from __future__ import annotations

from django.apps import apps


def row_counts() -> dict[str, int]:
    """Rows of every table the project's models own: a request that must store nothing leaves these equal."""
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }

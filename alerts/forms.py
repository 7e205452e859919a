"""Forms of the rep pages: the inbox filters and the one action form every alert row posts."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from alerts.models import Alert, RuleKey
from workspaces.models import Workspace

SNOOZE_CHOICES = [("1d", "1 day"), ("3d", "3 days"), ("7d", "1 week")]
SNOOZE_DELTAS = {"1d": timedelta(days=1), "3d": timedelta(days=3), "7d": timedelta(weeks=1)}


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Open and acknowledged"), *Alert.Status.choices], label="Status"
    )
    rule = forms.ChoiceField(required=False, choices=[("", "Any rule"), *RuleKey.choices], label="Rule")
    workspace = forms.CharField(required=False, max_length=64, label="Workspace ID")

    def filters(self) -> dict[str, str]:
        return _valid_filters(self)


class WorkspaceFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Workspace.Status.choices], label="Status")
    q = forms.CharField(required=False, max_length=254, label="Workspace ID, name or email contains")

    def filters(self) -> dict[str, str]:
        return _valid_filters(self)


def _valid_filters(form: forms.Form) -> dict[str, str]:
    """The filters that validated; an invalid one is dropped and its error shown next to its field."""
    form.is_valid()
    return {name: value.strip() for name, value in form.cleaned_data.items() if value and name not in form.errors}


class AlertActionForm(forms.Form):
    ACTIONS = [("acknowledge", "Acknowledge"), ("snooze", "Snooze"), ("resolve", "Resolve"), ("reopen", "Reopen")]

    action = forms.ChoiceField(choices=ACTIONS)
    snooze_for = forms.ChoiceField(choices=SNOOZE_CHOICES, required=False, label="Snooze for")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("action") == "snooze" and not cleaned.get("snooze_for"):
            self.add_error("snooze_for", "Choose how long to snooze for: 1 day, 3 days or 1 week.")
        return cleaned

    def snooze_until(self, now: datetime | None = None) -> datetime:
        return (now or timezone.now()) + SNOOZE_DELTAS[self.cleaned_data["snooze_for"]]

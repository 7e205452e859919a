"""Forms of the rep pages: the inbox filters and the one action form every alert row posts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from alerts.models import Alert, Rep, RuleKey, time_zone_names
from alerts.selectors import ALERT_SORTS, WORKSPACE_SORTS
from usage.selectors import cohort_choices, stage_choices
from workspaces.models import Workspace

SNOOZE_CHOICES = [("1d", "1 day"), ("3d", "3 days"), ("7d", "1 week")]
SNOOZE_DELTAS = {"1d": timedelta(days=1), "3d": timedelta(days=3), "7d": timedelta(weeks=1)}


EXPIRING_CHOICES = [("", "Any time"), ("1", "1 day"), *((str(days), f"{days} days") for days in (3, 7, 14, 30))]


def _expiring_field() -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        required=False, choices=EXPIRING_CHOICES, coerce=int, empty_value=None, label="Trial expiring within"
    )


def _sort_field(sorts: dict[str, tuple[str, Any]]) -> forms.ChoiceField:
    return forms.ChoiceField(required=False, choices=[(key, label) for key, (label, _) in sorts.items()], label="Sort")


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Open and acknowledged"), *Alert.Status.choices], label="Status"
    )
    rule = forms.ChoiceField(required=False, choices=[("", "Any rule"), *RuleKey.choices], label="Rule")
    expiring_within = _expiring_field()
    workspace = forms.CharField(required=False, max_length=64, label="Workspace ID")
    sort = _sort_field(ALERT_SORTS)

    def filters(self) -> dict[str, Any]:
        return _valid_filters(self)


class WorkspaceFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Workspace.Status.choices], label="Status")
    rule = forms.ChoiceField(required=False, choices=[("", "Any alert"), *RuleKey.choices], label="With an alert")
    expiring_within = _expiring_field()
    stage = forms.ChoiceField(required=False, label="Stage")
    cohort = forms.ChoiceField(required=False, label="Cohort")
    q = forms.CharField(required=False, max_length=254, label="Workspace ID, name or email contains")
    sort = _sort_field(WORKSPACE_SORTS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["stage"].choices = [("", "Any stage"), *stage_choices()]
        self.fields["cohort"].choices = [("", "Any cohort"), *cohort_choices()]

    def filters(self) -> dict[str, Any]:
        return _valid_filters(self)


def _valid_filters(form: forms.Form) -> dict[str, Any]:
    """The filters that validated; an invalid one is dropped and its error shown next to its field."""
    form.is_valid()
    cleaned = {name: value for name, value in form.cleaned_data.items() if value and name not in form.errors}
    return {name: value.strip() if isinstance(value, str) else value for name, value in cleaned.items()}


class BulkAcknowledgeForm(forms.Form):
    """The alerts ticked on an inbox page; one the user may not see makes the whole form invalid."""

    alert = forms.ModelMultipleChoiceField(
        queryset=Alert.objects.none(),
        error_messages={
            "required": "Tick at least one alert to acknowledge.",
            "invalid_choice": "Alert %(value)s is not one of your alerts.",
            "invalid_pk_value": "“%(pk)s” is not an alert id.",
        },
    )

    def __init__(self, *args: Any, alerts: QuerySet[Alert], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["alert"].queryset = alerts


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


# --- Rep settings (/reps/settings/) --------------------------------------------------------------------


def _time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(time_zone_names())]


class RepSettingsForm(forms.ModelForm):
    """A rep's own alert settings; the model's clean() checks the fields that go together.

    Not the address alerts go to: customer details in alerts must not be forwarded to any address a rep
    types; an admin sets it in the Rep admin."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=_time_zone_choices,
        error_messages={"invalid_choice": "“%(value)s” is not an IANA time zone; choose one like Europe/Berlin."},
        help_text="Quiet hours, the digest hour and your days away are in this zone.",
    )
    digest_hour = forms.TypedChoiceField(
        label="Digest hour",
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "Default"), *((str(hour), f"{hour:02d}:00") for hour in range(24))],
        help_text="When the daily digest comes, in your time zone.",
    )

    class Meta:
        model = Rep
        fields = (
            "email_on",
            "slack_on",
            "slack_member_id",
            "delivery",
            "digest_hour",
            "time_zone",
            "quiet_start",
            "quiet_end",
            "away_from",
            "away_until",
            "backup",
        )
        labels = {
            "email_on": "Email",
            "slack_on": "Slack",
            "slack_member_id": "Slack member ID",
            "delivery": "Delivery",
            "quiet_start": "Quiet from",
            "quiet_end": "Quiet until",
            "away_from": "Away from",
            "away_until": "Away until",
            "backup": "Backup rep",
        }
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "away_from": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "away_until": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        others = self.fields["backup"].queryset.filter(active=True, user__is_active=True).select_related("user")
        self.fields["backup"].queryset = others.exclude(pk=self.instance.pk) if self.instance.pk else others
        # The model's help texts speak to admins; this page speaks to the rep.
        helps = {
            "email_on": "Off: no alert emails reach you (instant or digest).",
            "slack_on": "Off: your alerts are not posted to the team's Slack channel.",
            "slack_member_id": "Your Slack member ID (e.g. U012AB3CD), to @-mention you in Slack.",
            "delivery": "Instant: an email per alert. Daily digest: one email a day.",
            "quiet_start": "Local time. Alerts arriving in quiet hours wait until they end.",
            "quiet_end": "Local time; may be the next morning.",
            "away_from": "Your first day away.",
            "away_until": "Your last day away.",
            "backup": "Gets your new alerts while you are away; your customers stay yours.",
        }
        for name, text in helps.items():
            self.fields[name].help_text = text

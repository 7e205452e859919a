"""A needs_review alert is resolved when its review questions are answered without anyone acting on it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.models import Alert
from alerts.services import alert_rule, workspaces_alerts_evaluate
from processing.pipeline import workspace_process
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def review_alerts() -> list[Alert]:
    return list(Alert.objects.filter(rule="needs_review").order_by("pk"))


def test_the_review_alert_is_resolved_when_the_engine_answers_the_question():
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com"))  # free mail: no account can match
    workspace_process(workspace_key="ws_1")
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])
    [alert] = review_alerts()
    assert alert.status == "open"

    store(lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(days=2), plan="team", mrr="49.00"))
    workspace_process(workspace_key="ws_1")  # the conversion makes the account: the question is answered
    assert not Workspace.objects.get(workspace_id="ws_1").needs_review
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])

    [alert] = review_alerts()
    assert alert.status == "resolved" and alert.resolved_at is not None
    assert "no longer needs review" in alert.context["resolved_because"]


def test_a_review_alert_whose_questions_changed_is_replaced_not_left_open():
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com"))
    workspace_process(workspace_key="ws_1")
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])
    workspace = Workspace.objects.get(workspace_id="ws_1")
    workspace.review_reasons = [*workspace.review_reasons, "Another question."]
    workspace.save(update_fields=["review_reasons"])

    workspaces_alerts_evaluate(workspace_keys=["ws_1"])

    first, second = review_alerts()
    assert first.status == "resolved" and "newer review alert" in first.context["resolved_because"]
    assert second.status == "open"


def test_a_review_alert_still_asked_stays_open():
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com"))
    workspace_process(workspace_key="ws_1")
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])

    [alert] = review_alerts()
    assert alert.status == "open"


def test_turning_the_review_rule_off_does_not_resolve_questions_still_open():
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com"))
    workspace_process(workspace_key="ws_1")
    workspaces_alerts_evaluate(workspace_keys=["ws_1"])
    rule = alert_rule("needs_review")
    rule.enabled = False
    rule.save()

    workspaces_alerts_evaluate(workspace_keys=["ws_1"])

    [alert] = review_alerts()
    assert alert.status == "open"

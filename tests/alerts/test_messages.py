"""What an alert's mail says: a subject is plain text, never HTML-escaped; the HTML body still is."""

from __future__ import annotations

import pytest

from alerts.messages import alert_email
from alerts.services import alert_raise
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_the_subject_is_plain_text_and_the_html_body_is_escaped() -> None:
    workspace = WorkspaceFactory(workspace_id="ws_kenji", email="kenji@example.jp", company="Kenji's <b>Co</b>")
    alert, _ = alert_raise(
        rule="trial_started",
        dedupe_key="k-subject",
        title="New trial: Kenji's workspace & <friends>",
        reason="Started today.",
        audience="rep",
        workspace=workspace,
    )

    subject, text, html = alert_email(alert)

    assert subject.endswith("New trial: Kenji's workspace & <friends>")
    assert "&#x27;" not in subject and "&amp;" not in subject
    assert "New trial: Kenji's workspace & <friends>" in text
    assert "Kenji&#x27;s workspace &amp; &lt;friends&gt;" in html

"""Signed webhooks take the short way through Django (events/fastpath.py): after the security middleware,
straight to their view, with none of the site's session, user, TOTP, CSRF, message or audit middleware."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import lifecycle_body

pytestmark = pytest.mark.django_db

BODY = lifecycle_body("usage.recorded", {"workspace_id": "ws_1", "feature": "f"})


def test_a_webhook_with_a_session_cookie_reads_no_session_or_user(client, admin_user, send_webhook):
    client.force_login(admin_user)  # the cookie a browser of the same site would send along
    with CaptureQueriesContext(connection) as queries:
        response = send_webhook(BODY)
    assert response.status_code == 202
    read = " ".join(query["sql"] for query in queries)
    assert "django_session" not in read and "auth_user" not in read


def test_security_headers_still_apply_and_the_site_middleware_does_not(send_webhook):
    response = send_webhook(BODY)
    assert response.status_code == 202
    assert "no-store" in response["Cache-Control"]
    assert "Content-Security-Policy" in response
    assert "X-Frame-Options" not in response, "the frame policy is for pages; the site middleware was skipped"
    assert "Set-Cookie" not in response and "csrftoken" not in response.cookies
    # As CommonMiddleware would: a server need not chunk an answer whose length it is told.
    assert response["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize("path", ["/webhooks/provisioning/", "/webhooks/provisioning/batch/", "/webhooks/marketo/"])
def test_every_webhook_still_answers_its_methods(client, path):
    response = client.get(path)
    assert response.status_code in (405, 503)


def test_other_paths_take_the_whole_stack(client):
    response = client.get("/admin/login/")
    assert response["X-Frame-Options"] == "DENY"

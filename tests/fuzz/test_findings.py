"""What the fuzzing found, pinned as plain tests (each failed before its fix)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/webhooks/provisioning/", "/webhooks/marketo/", "/webhooks/stripe/"])
def test_webhooks_answer_other_methods_405_with_allow(client, url):
    response = client.get(url)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {"error": "method_not_allowed", "allowed": ["POST"]}


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5"])
@pytest.mark.parametrize("url", ["/api/workspaces/", "/api/events/", "/api/alerts/"])
def test_a_page_that_is_not_a_number_from_1_is_an_invalid_filter(client, reader_token, url, page):
    response = client.get(url, {"page": page}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_filter", "fields": {"page": ["A page number of 1 or more is required."]}}


def test_a_page_past_the_last_is_404(client, reader_token):
    response = client.get("/api/workspaces/", {"page": "2"}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Invalid page."}


def test_the_last_page_by_name_still_works(client, reader_token):
    response = client.get("/api/workspaces/", {"page": "last"}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 200

"""Admin for error kinds and heartbeats: read-only lists, the latest object linked, "mark resolved"."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from failures import tasks
from failures.models import ErrorKind
from failures.services import error_record
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", None))
    return client


def test_error_kinds_list_and_page_link_the_latest_object(admin_client):
    event = EventFactory()
    kind = error_record(source="processing", kind="ValueError", message="bad value 42", obj=event)

    listing = admin_client.get("/admin/failures/errorkind/?source__exact=processing")
    page = admin_client.get(f"/admin/failures/errorkind/{kind.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert f'href="/admin/events/event/{event.pk}/change/"'.encode() in listing.content
    assert b"bad value &lt;n&gt;" in page.content
    assert b'name="_save"' not in page.content  # read-only
    assert admin_client.get("/admin/failures/errorkind/add/").status_code == 403


def test_resolve_action_marks_them_resolved(admin_client):
    kind = error_record(source="sync", kind="X", message="m")

    response = admin_client.post(
        "/admin/failures/errorkind/", {"action": "resolve", ACTION_CHECKBOX_NAME: [kind.pk]}, follow=True
    )

    assert response.status_code == 200
    assert ErrorKind.objects.get().resolved_at is not None


def test_heartbeats_list(admin_client):
    tasks.heartbeat()

    response = admin_client.get("/admin/failures/heartbeat/")

    assert response.status_code == 200
    assert b"queue" in response.content

"""Marketing email carries an unsubscribe link (signed, a page with no login, List-Unsubscribe one-click);
an address that unsubscribed gets no more marketing email from triggers, and its dispatch row says why;
transactional mail still goes."""

from __future__ import annotations

import itertools

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from messaging.delivery import dispatch_send
from messaging.models import Dispatch, Unsubscribe
from messaging.unsubscribe import unsubscribe_token
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import event, make_trigger
from triggers.services import ENABLED_CACHE_KEY, triggers_evaluate
from triggers.spec import actions_errors

pytestmark = pytest.mark.django_db
_n = itertools.count(1)


@pytest.fixture(autouse=True)
def plain(settings) -> None:
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None
    settings.SECURE_SSL_REDIRECT = False  # the test client speaks plain HTTP
    settings.PUBLIC_BASE_URL = "https://engine.example"
    cache.delete(ENABLED_CACHE_KEY)


@pytest.fixture
def workspace():
    return WorkspaceFactory(workspace_id="ws_news", email="dana@acme.io", name="Acme")


def send_one(workspace, *, marketing: bool) -> Dispatch:
    """A trigger with one welcome email (marketing or not) fires once; its dispatch is sent now."""
    key = f"{'promo' if marketing else 'receipt'}_{next(_n)}"
    action = {"channel": "email", "template": "welcome", **({"marketing": True} if marketing else {})}
    make_trigger(key, {"kind": "event", "event": {"type": "trial.started"}}, actions=[action])
    now = timezone.now()
    new = [event(workspace.workspace_id, "trial.started", now)]
    [firing] = [f for f in triggers_evaluate(workspace_key=workspace.workspace_id, new_events=new, now=now)
                if f.trigger.key == key]  # fmt: skip
    row = Dispatch.objects.get(source_id=firing.pk)
    dispatch_send(row.pk)
    row.refresh_from_db()
    return row


def path_of(url: str) -> str:
    return url.removeprefix("https://engine.example")


def test_a_marketing_email_carries_the_signed_link_in_its_body_and_headers(workspace):
    # when
    row = send_one(workspace, marketing=True)

    # then
    url = row.data["unsubscribe_url"]
    assert url == f"https://engine.example/unsubscribe/{unsubscribe_token(row.key)}/"
    assert row.data["marketing"] is True and row.status == Dispatch.Status.SENT
    [message] = mail.outbox
    assert message.extra_headers["List-Unsubscribe"] == f"<{url}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.body.endswith(url) and "dana@acme.io" not in url
    html = message.alternatives[0][0]
    assert f'href="{url}"' in html and html.index("Your trial has started") < html.index(url)


def test_a_transactional_email_has_no_link_and_no_header(workspace):
    row = send_one(workspace, marketing=False)

    [message] = mail.outbox
    assert "unsubscribe" not in message.body.lower() and "List-Unsubscribe" not in message.extra_headers
    assert "marketing" not in row.data


def test_the_page_needs_no_login_and_a_look_changes_nothing_until_the_button(workspace):
    # given
    row = send_one(workspace, marketing=True)
    page = path_of(row.data["unsubscribe_url"])

    # when
    looked = Client().get(page)

    # then
    assert looked.status_code == 200 and "d•••@acme.io" in looked.content.decode()
    assert not Unsubscribe.objects.exists()

    # when
    pressed = Client().post(page)

    # then
    assert pressed.status_code == 200 and b"You are unsubscribed" in pressed.content
    done = Unsubscribe.objects.get()
    assert (done.address, done.how, done.dispatch_key) == ("dana@acme.io", "page", row.key)


def test_one_click_from_the_mail_client_unsubscribes(workspace):
    row = send_one(workspace, marketing=True)

    answer = Client().post(path_of(row.data["unsubscribe_url"]), {"List-Unsubscribe": "One-Click"})

    assert answer.status_code == 200
    assert Unsubscribe.objects.get().how == Unsubscribe.How.ONE_CLICK


def test_after_unsubscribing_marketing_is_skipped_with_its_reason_and_transactional_mail_still_goes(workspace):
    # given
    first = send_one(workspace, marketing=True)
    Client().post(path_of(first.data["unsubscribe_url"]))
    mail.outbox.clear()

    # when
    promo = send_one(workspace, marketing=True)
    receipt = send_one(workspace, marketing=False)

    # then
    assert promo.status == Dispatch.Status.SKIPPED
    assert promo.last_error.startswith("unsubscribed from marketing email on ")
    assert promo.last_error.endswith("(the unsubscribe page)")
    assert receipt.status == Dispatch.Status.SENT
    assert [message.to for message in mail.outbox] == [["dana@acme.io"]]


def test_a_forged_or_cut_token_is_refused_and_records_nothing(workspace):
    row = send_one(workspace, marketing=True)
    token = unsubscribe_token(row.key)
    forged = unsubscribe_token(row.key).replace(row.key, "firing-1-email-9")

    for bad in (forged, token[:-4], "firing-1-email-0"):
        answer = Client().post(f"/unsubscribe/{bad}/")
        assert answer.status_code == 400 and b"not valid" in answer.content
    assert not Unsubscribe.objects.exists()


def test_only_an_email_can_be_marked_marketing():
    errors = actions_errors(
        [
            {"channel": "in_app", "template": "x", "marketing": True},
            {"channel": "email", "template": "x", "marketing": "yes"},
        ],
        "actions",
        ("email", "in_app"),
    )

    assert set(errors) == {"actions[0].marketing", "actions[1].marketing"}

"""`privacy erase`: afterwards neither the database nor the logs name the canary, only its tombstone hash;
Salesforce no longer has them; a replayed or late webhook does not bring them back; export has everything."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder

from events.models import Event
from linking.marketo import marketo_events_apply
from privacy.erasure import person_erase
from privacy.export import person_export
from privacy.identity import email_hash
from privacy.models import DataRequest, Tombstone
from privacy.services import data_request_carry_out, data_request_create
from processing.pipeline import workspace_process
from processing.replay import replay
from salesforce.models import OutboxItem
from tests.conftest import lifecycle_body, signed_headers
from tests.privacy.conftest import (
    CANARY,
    CANARY_NORMALISED,
    NAMES,
    OTHER,
    canary_events,
    database_dump,
    drain,
    log_text,
    salesforce_text,
    send_marketo,
)
from workspaces.models import Lead, Workspace

pytestmark = pytest.mark.django_db


def erase(canary, email: str = CANARY) -> str:
    out = io.StringIO()
    call_command("privacy", "erase", email, "--yes", "--by", canary.admin.username, "--note", "DSR-7", stdout=out)
    return out.getvalue()


def names_in(text: str) -> list[str]:
    lowered = text.lower()
    return [needle for needle in (CANARY_NORMALISED, *(n.lower() for n in NAMES)) if needle in lowered]


def test_before_erasure_the_canary_is_everywhere(canary, salesforce, caplog):
    """The greps below can fail: before erasure they find the canary in the dump and in Salesforce."""
    assert names_in(database_dump()) == [CANARY_NORMALISED, "cassandra", "quill"]
    assert CANARY_NORMALISED in salesforce_text(salesforce, include_deleted=False).lower()


def test_after_erasure_dump_and_logs_hold_only_the_tombstone_hash(canary, salesforce, caplog):
    erase(canary)
    drain()
    dump = database_dump()
    assert names_in(dump) == []
    digest = email_hash(CANARY)
    assert Tombstone.objects.filter(email_hash=digest).exists()
    assert digest in dump
    assert names_in(log_text(caplog)) == []
    # The bystander is untouched.
    assert Workspace.objects.get(workspace_id="ws_other").email == OTHER
    assert OTHER in dump


def test_after_erasure_salesforce_has_no_live_record_of_them(canary, salesforce):
    lead_id = Lead.objects.get(email=CANARY_NORMALISED).salesforce_id
    erase(canary)
    drain()
    assert names_in(salesforce_text(salesforce, include_deleted=False)) == []
    # Salesforce will not update a converted lead: it was deleted; the contact was anonymised.
    assert salesforce.store.get("Lead", lead_id) is None
    placeholder = Lead.objects.get(email__startswith="erased-").email
    contact = salesforce.store.find_one("Contact", Email=placeholder)
    assert contact is not None and not contact.get("FirstName")
    deletion = OutboxItem.objects.get(object_type="Deletion")
    assert deletion.state == OutboxItem.State.SYNCED
    assert OutboxItem.objects.get(object_type="Lead", external_id=deletion.payload["external_id"]).state == "erased"


def test_erasure_is_recorded_and_the_state_still_folds_from_the_events(canary, salesforce):
    output = erase(canary)
    request = DataRequest.objects.get()
    assert (request.kind, request.status, request.email, request.note) == ("erase", "done", "", "DSR-7")
    assert request.requested_by == canary.admin and request.completed_at is not None
    assert request.email_hash == email_hash(CANARY)
    assert "done" in output and request.summary["changed"]["leads"] == 1
    workspace = Workspace.objects.get(workspace_id="ws_canary")
    assert workspace.email.startswith("erased-") and workspace.email.endswith("@canary-corp.io")
    assert (workspace.first_name, workspace.last_name, workspace.status) == ("", "", "paid")
    assert workspace.account is not None and workspace.account.domain == "canary-corp.io"
    assert replay().drifted == []


def test_erasing_twice_changes_nothing_more(canary, salesforce):
    erase(canary)
    drain()
    dump = database_dump()
    erase(canary)
    second = DataRequest.objects.order_by("pk").last()
    assert second.summary["changed"] == {}
    assert Tombstone.objects.count() == 1
    assert names_in(database_dump()) == [] and len(database_dump()) >= len(dump)


def replay_webhook(send_webhook, webhook_id: str, body: str):
    return send_webhook(body, headers=signed_headers(body, msg_id=webhook_id))


def test_replayed_webhooks_after_erasure_do_not_bring_them_back(canary, salesforce, send_webhook, client, caplog):
    erase(canary)
    drain()
    # The sender retries the same deliveries: duplicates, nothing changes.
    for webhook_id, body in canary.sent:
        response = replay_webhook(send_webhook, webhook_id, body)
        assert (response.status_code, response.json()["status"]) == (200, "duplicate")
    # A late event for their workspace and a new sign-up under the same address, under new ids.
    late = lifecycle_body("workspace.churned", {"workspace_id": "ws_canary", "email": CANARY, "reason": "bye"})
    again = canary_events(CANARY.upper(), "ws_canary_again")[0]
    for body in (late, again):
        response = send_webhook(body)
        assert (response.status_code, response.json()["status"]) == (202, "accepted")
    assert send_marketo(client, CANARY, "mk_canary_2").status_code == 202
    suppressed = Event.objects.filter(suppressed=True)
    assert suppressed.count() == 3
    assert set(suppressed.values_list("status", flat=True)) == {"ignored"}
    assert all(note.startswith("Suppressed:") for note in suppressed.values_list("notes", flat=True))
    for key in ("ws_canary", "ws_canary_again"):
        workspace_process(workspace_key=key, force=True)
    marketo_events_apply()
    drain()
    assert Workspace.objects.get(workspace_id="ws_canary").status == "paid"  # the churn was not applied
    assert not Workspace.objects.filter(workspace_id="ws_canary_again").exists()
    assert Lead.objects.filter(email__startswith="erased-").count() == 1
    assert not Lead.objects.filter(marketo_lead_id="mk_canary_2").exists()
    assert names_in(database_dump()) == []
    assert names_in(log_text(caplog)) == []
    assert names_in(salesforce_text(salesforce, include_deleted=False)) == []


def test_a_malformed_event_naming_them_stays_rejected_and_scrubbed(canary, salesforce, send_webhook):
    erase(canary)
    body = lifecycle_body("trial.started", {"email": CANARY, "first_name": NAMES[0]})  # no workspace_id
    assert send_webhook(body).status_code == 422
    event = Event.objects.get(status=Event.Status.REJECTED)
    assert event.suppressed and event.payload_scrubbed_at is not None
    assert names_in(json.dumps(event.payload)) == []


def test_an_unsigned_replay_is_refused_and_stores_nothing(canary, salesforce, send_webhook):
    erase(canary)
    count = Event.objects.count()
    body = canary_events(CANARY)[0]
    response = send_webhook(body, headers={**signed_headers(body), "webhook-signature": "v1,Zm9yZ2Vk"})
    assert response.status_code == 401
    assert Event.objects.count() == count


def test_tombstone_deleted_by_a_superuser_lets_the_person_back(canary, salesforce, send_webhook):
    erase(canary)
    Tombstone.objects.all().delete()
    response = send_webhook(canary_events(CANARY, "ws_back")[0])
    assert response.status_code == 202
    workspace_process(workspace_key="ws_back")
    assert Workspace.objects.get(workspace_id="ws_back").email == CANARY_NORMALISED


# --- export ---------------------------------------------------------------------------------------


def rows_naming(needle: str) -> set[tuple[str, int]]:
    """(model label, pk) of every row in the database whose serialised form contains the needle."""
    from django.apps import apps
    from django.core import serializers

    found = set()
    for model in apps.get_models():
        for row in serializers.serialize("python", model.objects.all()):
            if needle in json.dumps(row, cls=DjangoJSONEncoder).lower():
                found.add((row["model"], row["pk"]))
    return found


def test_export_contains_every_row_that_names_them(canary, salesforce, tmp_path):
    target = tmp_path / "export.json"
    err = io.StringIO()
    call_command("privacy", "export", CANARY, "--output", str(target), "--by", canary.admin.username, stderr=err)
    document = json.loads(target.read_text())
    sections = [section for section in document.values() if isinstance(section, list)]
    exported = {(row["model"], row["pk"]) for section in sections for row in section}
    naming = rows_naming(CANARY_NORMALISED)
    assert naming, "the canary is in the database"
    assert naming - exported == set()
    assert document["email"] == CANARY_NORMALISED and document["erased"] is False
    for section in (
        "leads",
        "contacts",
        "workspaces",
        "accounts",
        "events",
        "review_items",
        "alerts",
        "usage",
        "outbox",
        "audit_log",
        "admin_log",
    ):
        assert document[section], section
    types = {row["fields"]["type"] for row in document["events"]}
    assert types >= {"trial.started", "subscription.converted", "usage.recorded", "marketo.lead_created"}
    request = DataRequest.objects.get()
    assert (request.kind, request.status, request.email) == ("export", "done", "")
    assert request.summary["found"]["events"] == len(document["events"])
    assert "wrote" in err.getvalue()


def database_rows() -> dict[tuple[str, int], str]:
    """(model label, pk) → the row serialised, lower-cased, for every row in the database."""
    from django.apps import apps
    from django.core import serializers

    return {
        (row["model"], row["pk"]): json.dumps(row, cls=DjangoJSONEncoder).lower()
        for model in apps.get_models()
        for row in serializers.serialize("python", model.objects.all())
    }


def test_export_and_erasure_find_the_same_records(canary, salesforce):
    """One finder for both: a colleague's workspace whose name mentions them was scrubbed but not exported."""
    colleague = Workspace.objects.get(workspace_id="ws_other")
    Workspace.objects.filter(pk=colleague.pk).update(name=f"Onboarding call with {CANARY_NORMALISED}")
    before = database_rows()
    document = person_export(email=CANARY_NORMALISED)
    exported = {(row["model"], row["pk"]) for section in document.values() if isinstance(section, list)
                for row in section}  # fmt: skip
    assert ("workspaces.workspace", colleague.pk) in exported

    erase(canary)

    after = database_rows()
    naming = {key for key, text in before.items() if names_in(text)}
    scrubbed = {key for key in naming if key in after and after[key] != before[key]}
    assert ("workspaces.workspace", colleague.pk) in scrubbed
    assert CANARY_NORMALISED not in Workspace.objects.get(pk=colleague.pk).name
    assert scrubbed - exported == set(), "erasure changed rows the export did not show"
    assert naming - exported == set()


def test_export_after_erasure_finds_nothing_but_says_erased(canary, salesforce):
    erase(canary)
    data_request = data_request_create(kind="export", email=CANARY, requested_by=canary.admin)
    document = data_request_carry_out(data_request=data_request)
    assert document["erased"] is True
    assert all(document[name] == [] for name in ("leads", "contacts", "workspaces", "events", "usage"))


def test_bad_email_is_named(canary, salesforce):
    with pytest.raises(CommandError, match="email: 'not-an-address' is not an email address"):
        call_command("privacy", "erase", "not-an-address", "--yes", "--by", canary.admin.username)
    with pytest.raises(CommandError, match="--by: no user named 'nobody'"):
        call_command("privacy", "export", CANARY, "--by", "nobody")


def test_erase_without_a_terminal_needs_yes(canary, salesforce, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(CommandError, match="pass --yes"):
        call_command("privacy", "erase", CANARY)
    assert not Tombstone.objects.exists()


def test_a_surname_in_the_email_domain_leaves_the_placeholder_a_valid_address(canary, salesforce, send_webhook):
    """dana@lowell-freight.io, surname Lowell: the placeholder keeps the company domain, and name scrubbing
    must not cut it (before: erased-2@[erased]-freight.io, so the re-fold put the events in review)."""
    for body in canary_events("dana@lowell-freight.io", "ws_lowell", ("Dana", "Lowell")):
        assert send_webhook(body).status_code == 202
    workspace_process(workspace_key="ws_lowell")

    person_erase(email="dana@lowell-freight.io")

    events = Event.objects.filter(workspace_key="ws_lowell", type__in=("trial.started", "subscription.converted"))
    assert set(events.values_list("status", flat=True)) == {"completed"}, list(events.values_list("notes", flat=True))
    started = events.get(type="trial.started")
    placeholder = started.payload["data"]["email"]
    assert placeholder.startswith("erased-") and placeholder.endswith("@lowell-freight.io")
    assert started.payload["data"]["workspace_name"] == "[erased]'s workspace"
    workspace = Workspace.objects.get(workspace_id="ws_lowell")
    assert (workspace.email, workspace.status, workspace.needs_review) == (placeholder, "paid", False)

"""Audit entries written together (workspaces/auditing.py) are the entries auditlog writes one by one:
same objects, actions, diffs and actor, in the same transaction, with one INSERT and no read of old rows."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from auditlog.context import disable_auditlog
from auditlog.models import LogEntry
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from processing import pipeline
from processing.tasks import process_workspaces
from tests.events.helpers import T0, lifecycle_event, store
from tests.workspaces.helpers import writes_entries
from workspaces.actors import acting_as_system, system_actor
from workspaces.auditing import audit_entries_together
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace

pytestmark = pytest.mark.django_db


def scenario() -> None:
    """Trials on a company domain and on free mail, a conversion that creates the account its colleagues
    are adopted onto, a churn, and a payment with no trial (a review item with its events, m2m)."""
    store(
        lifecycle_event("t1", "trial.started", workspace_id="ws_1", email="dana@acme.io"),
        lifecycle_event("t2", "trial.started", workspace_id="ws_2", email="lee@acme.io", first_name="Lee"),
        lifecycle_event("t3", "trial.started", workspace_id="ws_3", email="kim@gmail.com", company=""),
        lifecycle_event("c4", "subscription.converted", workspace_id="ws_4"),
    )
    process_workspaces(["ws_1", "ws_2", "ws_3", "ws_4"])
    later = T0 + timedelta(days=2)
    store(
        lifecycle_event("c1", "subscription.converted", workspace_id="ws_1", at=later),
        lifecycle_event("x2", "workspace.churned", workspace_id="ws_2", at=later, reason="too pricey"),
    )
    process_workspaces(["ws_1", "ws_2"])


def entries() -> list[tuple]:
    """The audit trail with what differs between two runs (ids, clocks) masked."""

    def masked(name: str, value: object) -> object:
        if name == "id" or name.endswith("_at") or name in ("lead", "account", "contact", "converted_account",
                                                            "converted_contact", "workspace", "events",
                                                            "firing"):  # fmt: skip
            return "…"
        return value

    rows = LogEntry.objects.select_related("content_type", "actor").order_by("pk")
    return sorted(
        (
            row.content_type.model,
            row.action,
            row.object_repr,
            row.actor.username if row.actor else None,
            sorted((name, masked(name, str(change))) for name, change in row.changes_dict.items()),
        )
        for row in rows
    )


def run(batched: bool, monkeypatch) -> list[tuple]:
    if not batched:
        monkeypatch.setattr(pipeline, "audit_entries_together", contextlib.nullcontext)
    with contextlib.suppress(_Undo), transaction.atomic():
        scenario()
        trail = entries()
        raise _Undo
    monkeypatch.undo()
    return trail


class _Undo(Exception):
    pass


def test_batched_entries_are_the_entries_auditlog_writes_one_by_one(monkeypatch):
    one_by_one = run(False, monkeypatch)
    together = run(True, monkeypatch)
    assert len(together) > 20
    assert {entry[0] for entry in together} >= {"workspace", "lead", "account", "contact", "reviewitem"}
    assert any(entry[0] == "reviewitem" and entry[4] and entry[4][0][0] == "events" for entry in together)  # m2m
    assert together == one_by_one


def test_a_task_inserts_its_entries_in_one_statement_and_reads_no_old_row():
    store(*(lifecycle_event(f"t{n}", "trial.started", workspace_id=f"ws_{n}", email=f"o{n}@acme.io") for n in range(4)))
    process_workspaces([f"ws_{n}" for n in range(4)])
    store(*(lifecycle_event(f"x{n}", "workspace.churned", workspace_id=f"ws_{n}", at=T0 + timedelta(days=1))
            for n in range(4)))  # fmt: skip
    before = LogEntry.objects.count()
    with CaptureQueriesContext(connection) as queries:
        pipeline.workspaces_process(workspace_keys=[f"ws_{n}" for n in range(4)])
    sql = [q["sql"] for q in queries.captured_queries]
    assert sum(writes_entries(s) for s in sql) == 1
    assert sum(s.startswith('SELECT "workspaces_workspace"') for s in sql) == 1  # the batch's own read
    assert LogEntry.objects.count() == before + 4
    changes = [e.changes_dict for e in LogEntry.objects.order_by("-pk")[:4]]
    assert all(change["status"] == ["trial", "churned"] for change in changes)
    assert {e.actor for e in LogEntry.objects.order_by("-pk")[:4]} == {system_actor()}


def test_a_rolled_back_block_leaves_no_entries():
    lead = Lead.objects.create(email="dana@acme.io")
    before = LogEntry.objects.count()
    with contextlib.suppress(_Undo), transaction.atomic(), audit_entries_together():
        lead.first_name = "Dana"
        lead.save()
        raise _Undo
    assert LogEntry.objects.count() == before


def test_the_old_value_is_what_was_loaded_or_last_saved_and_in_place_changes_count():
    workspace = Workspace.objects.create(workspace_id="ws_1", status="trial", review_reasons=["a"])
    loaded = Workspace.objects.get(pk=workspace.pk)
    with transaction.atomic(), acting_as_system(), audit_entries_together():
        loaded.review_reasons.append("b")  # changed in place: the snapshot is a copy
        loaded.save(update_fields=["review_reasons"])
        loaded.status = "paid"
        loaded.save(update_fields=["status"])
        loaded.status = "churned"
        loaded.save(update_fields=["status"])
    trail = [e.changes_dict for e in LogEntry.objects.filter(object_pk=str(workspace.pk)).order_by("pk")][1:]
    assert trail == [
        {"review_reasons": ['["a"]', '["a", "b"]']},
        {"status": ["trial", "paid"]},
        {"status": ["paid", "churned"]},
    ]


def test_without_a_snapshot_the_old_row_is_read_as_auditlog_reads_it():
    Lead.objects.create(email="dana@acme.io", first_name="D")
    Lead.objects.filter(email="dana@acme.io").update(first_name="Dee")  # behind any snapshot
    lead = Lead.objects.get(email="dana@acme.io")
    lead.refresh_from_db()  # drops the snapshot
    lead.first_name = "Dana"
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), audit_entries_together():
        lead.save(update_fields=["first_name"])
    assert any(q["sql"].startswith('SELECT "workspaces_lead"') for q in queries.captured_queries)
    assert LogEntry.objects.order_by("pk").last().changes_dict == {"first_name": ["Dee", "Dana"]}


def test_many_to_many_changes_and_deletions_are_collected_too():
    store(lifecycle_event("c1", "subscription.converted", workspace_id="ws_1"))
    event_pk = pipeline.Event.objects.get().pk
    item = ReviewItem.objects.create(kind="no_trial_data", dedupe_key="k", reason="r")
    item_pk = item.pk
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), audit_entries_together():
        item.events.add(event_pk)
        item.delete()
    assert sum(writes_entries(q["sql"]) for q in queries.captured_queries) == 1
    actions = list(LogEntry.objects.filter(object_pk=str(item_pk), content_type__model="reviewitem")
                   .order_by("pk").values_list("action", flat=True))  # fmt: skip
    assert actions == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE, LogEntry.Action.DELETE]


def test_inside_disable_auditlog_nothing_is_collected():
    with transaction.atomic(), disable_auditlog(), audit_entries_together():
        Lead.objects.create(email="dana@acme.io")
    assert not LogEntry.objects.filter(content_type__model="lead").exists()


@pytest.mark.parametrize("as_json", [False, True])
def test_create_and_delete_diffs_equal_auditlog_field_for_field_and_in_order(as_json):
    """The one-sided diff keeps auditlog's constants per field; it must give auditlog's own dict (same
    keys in the same order, same values) for every audited model, with and without JSON changes, also
    for instances that hold a reverse relation's objects (prefetched, or a cached one-to-one)."""
    from auditlog.diff import model_instance_diff
    from auditlog.registry import auditlog

    from workspaces.auditing import _one_sided_diff

    def compare(instances, created):
        for obj in instances:
            pair = (None, obj) if created else (obj, None)
            expected = model_instance_diff(*pair, use_json_for_changes=as_json)
            actual = _one_sided_diff(obj, created=created, as_json=as_json)
            assert list((actual or {}).items()) == list((expected or {}).items()), (obj, created)

    scenario()
    ReviewItem.objects.first().events.add(pipeline.Event.objects.first())
    converted = Contact.objects.select_related("converted_from").filter(converted_from__isnull=False)[:2]
    assert converted and all(c.converted_from for c in converted)

    def everything():
        instances = [obj for model in auditlog.get_models() for obj in model._default_manager.all()[:3]]
        instances += list(Workspace.objects.prefetch_related("alerts")[:2])
        instances += list(Lead.objects.prefetch_related("workspaces", "review_items")[:2])
        return instances

    assert {type(obj).__name__ for obj in everything()} >= {"Workspace", "Lead", "Account", "Contact", "ReviewItem"}
    for _ in range(2):  # the second pass reads the kept constants
        compare([*everything(), *converted], created=False)
        compare(converted, created=True)  # the cached lead is logged, as auditlog logs it
    Lead.objects.update(converted_contact=None, converted_account=None, converted_at=None)  # as if just created
    compare(everything(), created=True)


def test_creating_a_row_reads_nothing_for_the_audit_entry():
    account = Account.objects.create(name="Acme", domain="acme.io")
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), audit_entries_together():
        contact = Contact.objects.create(email="dana@acme.io", account=account)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 2 and writes_entries(statements[1])  # the contact, its entry: no lead query
    from auditlog.diff import model_instance_diff

    written = LogEntry.objects.get(content_type__model="contact").changes_dict
    assert written == {k: list(v) for k, v in model_instance_diff(None, contact).items()}

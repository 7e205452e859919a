"""The pilot: while one is in force, only its workspaces' records go to Salesforce; the rest wait, `held`.

The unit is the workspace. With SALESFORCE_PILOT_REPS it is the customers those reps own: a workspace's
owner rep is its account's owner, else the rep kept as the customer's owner, whom its alerts go to (the
first one routing chose, by territory or round robin: alerts/routing.py). So a trial without an account
and an account made at conversion (which has no owner) still belong to a rep.
Without reps, a stable share of workspaces (SALESFORCE_PILOT_PERCENT, by a hash of the workspace id).

A record several workspaces use (a lead, a shared account, a contact) goes as soon as one of them is in
the pilot, and a record the pilot sends takes what it depends on with it: the drainer releases a held
dependency and lets the record wait for it (salesforce/worker.py, `_pilot_gate`).

Widening a pilot or ending it takes a restart with the new settings; then `pilot_release` (a task every
minute) goes over the held rows once and releases those now in the pilot, with what they depend on, at
most SALESFORCE_PILOT_RELEASE_PER_MINUTE a minute; the drainer sends them in dependency order. Its
progress is on the control row, shown on the outbox page and the ops dashboard (`pilot_status`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from salesforce.models import OutboxItem, SyncControl
from salesforce.outbox import lookup_keys, pk_of
from workspaces.models import Workspace

HELD, PENDING = OutboxItem.State.HELD, OutboxItem.State.PENDING
#: A rep pilot looks again this often at every held row: an account's owner may have been set since.
REP_RESCAN = timedelta(minutes=30)
#: ... and every minute at rows held this recently: their workspace's first alert (which names its rep)
#: is routed just after processing commits, and the drainer may have looked before.
REP_RECENT = timedelta(minutes=10)
IN_CHUNK = 500  # ids in one IN list


@dataclass(frozen=True)
class Pilot:
    """The pilot the settings put in force (read at start-up: a change takes a restart)."""

    reps: tuple[str, ...]
    percent: int

    @property
    def everyone(self) -> bool:
        return not self.reps and self.percent >= 100

    @property
    def key(self) -> str:
        """What the held rows were gone over against: a new key starts a new pass."""
        if self.reps:
            return "reps=" + ",".join(self.reps)
        return "all" if self.everyone else f"percent={self.percent}"

    def describe(self) -> str:
        if self.reps:
            return f"the customers of {', '.join(self.reps)}"
        if self.everyone:
            return "none: every workspace is sent"
        return f"{self.percent} % of workspaces"


def pilot_in_force() -> Pilot:
    return Pilot(tuple(sorted(set(settings.SALESFORCE_PILOT_REPS))), settings.SALESFORCE_PILOT_PERCENT)


def share_bucket(workspace_key: str) -> int:
    """A workspace's stable place, 0-99, in a share pilot: widening keeps every workspace already in it."""
    return int(hashlib.sha256(workspace_key.encode()).hexdigest()[:8], 16) % 100


def _chunks(values: Collection, size: int = IN_CHUNK) -> Iterable[list]:
    ordered = sorted(values)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def workspace_owner_reps(keys: Collection[str]) -> dict[str, str]:
    """The username of each workspace's owner rep, where it has one, as the alerts' routing sees it
    (alerts/routing.py): its account's owner; else the rep kept as the customer's owner (its own, else its
    account's earliest-assigned colleague's). Customers routed before owners were kept got the rep of their
    first rep alert as owner (alerts/migrations/0010). An account made at conversion has no owner: the
    customer's kept one counts."""
    owners: dict[str, str] = {}
    for chunk in _chunks(keys):
        by_account: dict[int, list[str]] = {}
        rows = Workspace.objects.filter(workspace_id__in=chunk).values_list(
            "workspace_id", "account_id", "account__owner__username", "owner__username"
        )
        for key, account_id, account_owner, owner in rows:
            if account_owner or owner:
                owners[key] = account_owner or owner
            elif account_id is not None:
                by_account.setdefault(account_id, []).append(key)
        colleagues = (
            Workspace.objects.filter(account_id__in=list(by_account), owner__isnull=False)
            .order_by("-owner_since", "-pk")
            .values_list("account_id", "owner__username")
        )
        for account_id, owner in colleagues:  # earliest last: it wins
            owners.update(dict.fromkeys(by_account[account_id], owner))
    return owners


def workspaces_in_pilot(keys: Collection[str], *, pilot: Pilot | None = None) -> set[str]:
    """Of these workspace ids, those the pilot sends."""
    pilot = pilot or pilot_in_force()
    keys = {key for key in keys if key}
    if pilot.everyone:
        return keys
    if pilot.reps:
        owners = workspace_owner_reps(keys)
        return {key for key in keys if owners.get(key) in pilot.reps}
    return {key for key in keys if share_bucket(key) < pilot.percent}


#: Per type: the workspaces whose records depend on a record of that type, as (filter on a record's
#: primary key, the value it is matched by). A Contact is used by a workspace on it and by the one whose
#: lead was converted into it; an Account by the workspaces on it and on its contacts; a lead and its
#: conversion by the workspaces of the lead and of the contact it was converted into. Whatever a pilot
#: record depends on (`held_dependencies`) is so used by the same workspace, so it is in the pilot too.
_USED_BY = {
    "Lead": (("lead_id__in", "lead_id"), ("contact__converted_from__in", "contact__converted_from")),
    "LeadConversion": (("lead_id__in", "lead_id"), ("contact__converted_from__in", "contact__converted_from")),
    "Contact": (("contact_id__in", "contact_id"), ("lead__converted_contact_id__in", "lead__converted_contact_id")),
    "Account": (
        ("account_id__in", "account_id"),
        ("contact__account_id__in", "contact__account_id"),
        ("lead__converted_contact__account_id__in", "lead__converted_contact__account_id"),
    ),
}


def _workspaces_using(items: Sequence[OutboxItem]) -> dict[int, set[str]]:
    """For each row, the workspaces that use its record (its own workspace among them)."""
    using = {item.pk: {item.workspace_key} - {""} for item in items}
    by_record: dict[tuple[str, int], list[int]] = {}
    for item in items:
        if item.object_type == "Workspace__c":
            using[item.pk].add(item.external_id)
        elif item.object_type in _USED_BY:
            by_record.setdefault((item.object_type, pk_of(item.external_id)), []).append(item.pk)
    for object_type, paths in _USED_BY.items():
        pks = {pk for kind, pk in by_record if kind == object_type}
        for lookup, column in paths:
            for chunk in _chunks(pks):
                for record_pk, workspace_id in Workspace.objects.filter(**{lookup: chunk}).values_list(
                    column, "workspace_id"
                ):
                    for row_pk in by_record[object_type, record_pk]:
                        using[row_pk].add(workspace_id)
    return using


def rows_in_pilot(items: Sequence[OutboxItem], *, pilot: Pilot | None = None) -> set[int]:
    """The ids of the rows the pilot sends: those of a workspace in it, and those a workspace in it uses.

    A privacy erasure is never held: what reached Salesforce must leave it, pilot or not.
    """
    pilot = pilot or pilot_in_force()
    if pilot.everyone:
        return {item.pk for item in items}
    live = {item.pk for item in items if item.object_type == "Deletion"}
    rest = [item for item in items if item.pk not in live]
    using = _workspaces_using(rest)
    inside = workspaces_in_pilot({key for keys in using.values() for key in keys}, pilot=pilot)
    return live | {pk for pk, keys in using.items() if keys & inside}


def _dependency_keys(item: OutboxItem) -> tuple[int | None, set[tuple[str, str]]]:
    """The row a row waits for (a conversion's lead, a contact's conversion) and the records it looks up.

    Not an account's maker: an account a pilot needs can be upserted on its own (`rows_release`)."""
    if item.object_type == "Deletion":
        return None, set()
    waits_for = item.depends_on_id if item.object_type != "Account" else None
    return waits_for, lookup_keys(item.object_type, item.payload)


def held_dependencies(items: Sequence[OutboxItem]) -> dict[int, list[OutboxItem]]:
    """For each row that depends on rows the pilot holds, those rows (one query)."""
    wanted = {item.pk: _dependency_keys(item) for item in items}
    ids = {waits_for for waits_for, _ in wanted.values() if waits_for}
    by_type: dict[str, set[str]] = {}
    for _, keys in wanted.values():
        for object_type, external_id in keys:
            by_type.setdefault(object_type, set()).add(external_id)
    match = Q(pk__in=sorted(ids)) if ids else Q()
    for object_type, external_ids in by_type.items():
        match |= Q(object_type=object_type, external_id__in=sorted(external_ids))
    if not match:
        return {}
    held = list(OutboxItem.objects.filter(match, state=HELD))
    by_pk = {row.pk: row for row in held}
    by_key = {(row.object_type, row.external_id): row for row in held}
    found = {}
    for pk, (waits_for, keys) in wanted.items():
        rows = [by_key[key] for key in keys if key in by_key] + ([by_pk[waits_for]] if waits_for in by_pk else [])
        if rows:
            found[pk] = rows
    return found


def rows_release(items: Sequence[OutboxItem]) -> list[OutboxItem]:
    """Release these held rows and the held rows they depend on, to be sent (pending); return them all.

    An account whose maker (the conversion that would make it) stays held is upserted on its own: its
    maker is cleared in the same UPDATE, so a pilot conversion onto it waits for it rather than making a
    second one. One row a statement: processing may hold some of them, and a statement holding one row
    while it waits for another could close a cycle with it (see salesforce/stamping.py).
    """
    released: dict[int, OutboxItem] = {}
    batch = [item for item in items if item.state == HELD]
    while batch:
        released.update((item.pk, item) for item in batch)
        deps = held_dependencies(batch)
        batch = list({row.pk: row for rows in deps.values() for row in rows if row.pk not in released}.values())
    makers = {item.depends_on_id for item in released.values() if item.object_type == "Account"} - set(released)
    staying = set(OutboxItem.objects.filter(pk__in=makers - {None}, state=HELD).values_list("pk", flat=True))
    for item in released.values():
        fields = {"state": PENDING, "next_attempt_at": None, "lease_owner": "", "lease_expires_at": None}
        if item.object_type == "Account" and item.depends_on_id in staying:
            fields["depends_on"] = None
        if OutboxItem.objects.filter(pk=item.pk, state=HELD).update(**fields) and item.object_type == "Workspace__c":
            Workspace.objects.filter(workspace_id=item.external_id).update(salesforce_state=PENDING)
    return list(released.values())


# --- after a widening: the pass over the held rows ---------------------------------------------------


@dataclass
class PilotRelease:
    pilot: str
    looked: int = 0
    released: int = 0
    done: bool = True


def pilot_release(*, limit: int | None = None, now: datetime | None = None) -> PilotRelease:
    """Release what the pilot in force now takes in, at most `limit` rows (with what they depend on).

    A pass over the held rows starts whenever the pilot differs from the one they were last gone over
    against (a restart with new settings), and for a rep pilot also every REP_RESCAN; it goes on from
    where the last call stopped. Rows of a rep pilot held in the last REP_RECENT are looked at each time.
    """
    pilot, now = pilot_in_force(), now or timezone.now()
    limit = settings.SALESFORCE_PILOT_RELEASE_PER_MINUTE if limit is None else limit
    report = PilotRelease(pilot.key)
    if settings.SALESFORCE_SYNC != "live" or limit <= 0:
        return report
    control = _pass_begin(pilot, now)
    if pilot.reps:
        recent = OutboxItem.objects.filter(state=HELD, updated_at__gte=now - REP_RECENT).order_by("pk")
        live = rows_in_pilot(list(recent[: 10 * limit]), pilot=pilot)
        report.released += len(rows_release(list(OutboxItem.objects.filter(pk__in=sorted(live)[:limit]))))
    cursor = control.pilot_cursor
    while cursor is not None and report.released < limit and report.looked < 10 * limit:
        rows = list(OutboxItem.objects.filter(state=HELD, pk__gt=cursor).order_by("pk")[:limit])
        if not rows:
            cursor = None
            break
        live = rows_in_pilot(rows, pilot=pilot)
        chosen = [row for row in rows if row.pk in live][: limit - report.released]
        # Stop after the last row released when the limit is reached: the rest is looked at next time.
        last = chosen[-1].pk if len(chosen) < len(live) else rows[-1].pk
        report.looked += sum(row.pk <= last for row in rows)
        report.released += len(rows_release(chosen))
        cursor = last
    report.done = cursor is None
    _pass_record(control, cursor, report, now)
    return report


def _pass_begin(pilot: Pilot, now: datetime) -> SyncControl:
    control, _ = SyncControl.objects.get_or_create(pk=1)
    stale = pilot.reps and control.pilot_finished_at is not None and control.pilot_finished_at < now - REP_RESCAN
    if control.pilot_key != pilot.key or (stale and control.pilot_cursor is None):
        control.pilot_key, control.pilot_cursor = pilot.key, 0
        control.pilot_started_at, control.pilot_finished_at = now, None
        control.pilot_total = OutboxItem.objects.filter(state=HELD).count()
        control.pilot_looked = control.pilot_released = 0
    return control


def _pass_record(control: SyncControl, cursor: int | None, report: PilotRelease, now: datetime) -> None:
    if control.pilot_cursor is not None and cursor is None:
        control.pilot_finished_at = now
    control.pilot_cursor = cursor
    control.pilot_looked += report.looked
    control.pilot_released += report.released
    SyncControl.objects.filter(pk=control.pk).update(
        pilot_key=control.pilot_key,
        pilot_cursor=control.pilot_cursor,
        pilot_started_at=control.pilot_started_at,
        pilot_finished_at=control.pilot_finished_at,
        pilot_total=control.pilot_total,
        pilot_looked=control.pilot_looked,
        pilot_released=control.pilot_released,
    )


# --- what the admin sees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PilotStatus:
    """The pilot in force and what it holds, for the outbox page and the ops dashboard."""

    pilot: Pilot
    mode: str  # SALESFORCE_SYNC: a pilot holds rows only when live
    held_rows: int
    held_workspaces: int
    held_by_type: dict[str, int]
    pass_key: str  # the pilot the held rows were last gone over against
    passing: bool  # a pass over the held rows is under way (after a widening)
    looked: int
    total: int
    released: int
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def summary(self) -> str:
        """One line: who, what share, how much is held, and the release after a widening."""
        held = f"{self.held} held"
        return f"Pilot: {self.pilot.describe()} — {held}. {self.progress}"

    @property
    def held(self) -> str:
        """'2 records (1 workspace)'."""
        records, workspaces = self.held_rows, self.held_workspaces
        return f"{records} record{'s' * (records != 1)} ({workspaces} workspace{'s' * (workspaces != 1)})"

    @property
    def progress(self) -> str:
        if self.mode != "live":
            return f"Not applied: the sync is {self.mode}."
        if self.passing:
            return (
                f"Releasing what the pilot now takes in: {self.looked} of {self.total} held records gone over, "
                f"{self.released} released so far."
            )
        if self.started_at is None:
            return "No release pass yet."
        when = f"{self.finished_at:%Y-%m-%d %H:%M} UTC" if self.finished_at else "—"
        return f"Last release pass done {when}: {self.released} released."


def pilot_status() -> PilotStatus:
    held = OutboxItem.objects.filter(state=HELD).values_list("object_type").annotate(n=Count("pk")).order_by()
    counts = dict(held.values_list("object_type", "n"))
    control = SyncControl.objects.filter(pk=1).first() or SyncControl()
    return PilotStatus(
        pilot=pilot_in_force(),
        mode=settings.SALESFORCE_SYNC,
        held_rows=sum(counts.values()),
        held_workspaces=counts.get("Workspace__c", 0),
        held_by_type=counts,
        pass_key=control.pilot_key,
        passing=control.pilot_cursor is not None,
        looked=control.pilot_looked,
        total=control.pilot_total,
        released=control.pilot_released,
        started_at=control.pilot_started_at,
        finished_at=control.pilot_finished_at,
    )

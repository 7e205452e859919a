"""Chaos over firings and deliveries: exactly once, every firing explained, at the stand-ins themselves.

Real gunicorn and two `qcluster` processes (two workers each) on PostgreSQL with the ORM broker, five
enabled triggers of five kinds (an event, a count within a window, a stall with a follow-up that
escalates, a silence, a cohort entered; tests/chaos/definitions.json) whose actions reach the product's
webhook receiver (in-app), the mail sink (email) and Zendesk (tickets) over real HTTP and SMTP. The stories
(tests/chaos/firings.py) arrive duplicated and out of order, are redelivered once processed, and
`manage.py replay --repair` runs among them. Meanwhile a worker evaluating usage against the triggers (the
rollup, or its evaluation task) is SIGKILLed first, then one running a send, a timer sweep or an evaluation
every 2–5 s, and the stand-ins fail: 5xx, 429, stalls past the engine's timeout, SMTP 451, and answers given
late after the message was taken (the engine resends: the same message). The sweeps run every 2 s
(`firings.Ticker`) instead of every minute.

Then, against the stories in sorted order: every expected occurrence has exactly one firing, fired, and
nothing else fired; every firing explains itself (its kind, the events by id, the counts and thresholds,
the cohort's why, the escalated firing); every fired action is one dispatch, sent or visibly dead with
its error; and at the stand-ins no message is duplicated — one webhook-id per in-app message (the product
drops a repeated id), one Message-ID per email (a copy resent after a late answer carries the same id,
counted apart), one ticket per escalation (a resend comments on it).

Size: CHAOS_FIRING_WORKSPACES (default 45, about 370 webhooks and 190 messages). PostgreSQL only.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.firings import (
    DEFINITIONS,
    EXPORTS,
    LIMITED,
    SILENT,
    STALLED,
    TEAM,
    WELCOME,
    Arrived,
    Gremlin,
    StandIns,
    Stories,
    Ticker,
    arrived_in_app,
    arrived_mail,
    arrived_tickets,
    ticket_comments,
    trigger_stories,
)
from tests.chaos.harness import REPO, SECRET, Engine, Monkey, ScratchDatabase, deliveries, send_all

pytestmark = [pytest.mark.postgres, pytest.mark.chaos]

WORKSPACES = int(os.environ.get("CHAOS_FIRING_WORKSPACES", "45"))
CHAOS_SECONDS = float(os.environ.get("CHAOS_FIRING_SECONDS", "15"))
SETTLE_SECONDS = float(os.environ.get("CHAOS_SETTLE_SECONDS", "240"))
#: The engine's timeout at every stand-in; the gremlin's stalls and late answers go beyond it.
TIMEOUT = 1.0
PRODUCT_SECRET = "whsec_" + base64.b64encode(b"chaos-test-product-webhook-key-01").decode()
#: Workers the monkey kills: a send in flight, a timer sweep, a trigger evaluation (the event pipeline's
#: own tasks are tests/chaos/test_chaos.py's).
TARGETS = ("send_dispatches", "fire_due_timers", "evaluate_workspaces")
#: Where usage's trigger evaluation runs: in the rollup's transaction, or in a task of its own after it.
EVALUATIONS = ("rollup_usage", "evaluate_workspaces")
KIND = {WELCOME: "event", EXPORTS: "count", STALLED: "stall", SILENT: "silence", LIMITED: "cohort"}
CHANNELS = {WELCOME: ["in_app"], EXPORTS: ["ticket"], STALLED: ["email"], SILENT: ["email"], LIMITED: ["in_app"]}


@pytest.fixture
def stand_ins() -> Iterator[StandIns]:
    running = StandIns.start(product_secret=PRODUCT_SECRET)
    try:
        yield running
    finally:
        running.stop()


def engine_env(database: ScratchDatabase, stand_ins: StandIns, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": "chaos-test-secret-key-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database.url,
        "Q_BROKER": "orm",
        "Q_WORKERS": "2",
        "LOG_LEVEL": "INFO",  # the cluster says " running." at INFO: the harness waits for it
        "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
        "PROVISIONING_WEBHOOK_SECRET": SECRET,
        "PRIVACY_HASH_SALT": "chaos-test-salt-" + "s" * 32,
        "EVENT_LEASE_SECONDS": "10",
        "EVENT_RETRY_BASE_SECONDS": "1",
        "EVENT_RETRY_MAX_SECONDS": "10",
        "SALESFORCE_SYNC": "off",
        **stand_ins.env(timeout=TIMEOUT),
    }
    # Trust the Zendesk stand-in's CA on top of whatever this machine already trusts.
    inherited = os.environ.get("REQUESTS_CA_BUNDLE", "")
    if inherited and Path(inherited).is_file():
        combined = tmp_path / "chaos-ca-bundle.pem"
        combined.write_text(Path(inherited).read_text() + "\n" + Path(stand_ins.desk.ca_bundle_path).read_text())
        env["REQUESTS_CA_BUNDLE"] = str(combined)
    return env


def test_chaos_firings(scratch, stand_ins, tmp_path):
    logs = REPO / "artifacts" / "chaos" / f"firings-{time.strftime('%Y%m%d-%H%M%S')}"  # kept for a post-mortem
    logs.mkdir(parents=True, exist_ok=True)
    env = engine_env(scratch, stand_ins, tmp_path)
    engine = Engine(env, logs=logs)
    ticker = Ticker(env, logs)
    stories = trigger_stories(workspaces=WORKSPACES, seed=7)
    monkey = Monkey(engine, None, seed=9, every=(2, 5), prefer=TARGETS, first=(EVALUATIONS,))
    gremlin = Gremlin(stand_ins, timeout=TIMEOUT, seed=13)
    rng = random.Random(17)
    t0 = t_sent = time.monotonic()
    try:
        engine.manage("migrate", "--no-input")
        engine.manage("behaviour_definitions", "load", str(DEFINITIONS))
        # Timers wait until every story is in: a stall is decided by the events, not by their arrival order.
        hold_timers(scratch, hours=24)
        engine.start()
        t0 = time.monotonic()
        monkey.start()
        gremlin.start()
        answers = send_all(engine.port, deliveries(stories.sent, duplicate_share=0.15, seed=4))
        # Replays: redeliveries of processed webhooks, and the operator's re-fold of every workspace.
        send_all(engine.port, rng.sample(stories.sent, len(stories.sent) // 3))
        engine.manage("replay", "--repair")
        t_sent = time.monotonic()
        hold_timers(scratch, hours=0)
        ticker.start()
        wait_settled(scratch, ticker, timeout=CHAOS_SECONDS)  # the faults go on while the backlog is worked off
        monkey.stop()
        gremlin.stop()
        settled = wait_settled(scratch, ticker, timeout=SETTLE_SECONDS)
        assert settled, f"not settled: {counts(scratch)}\nticker: {ticker.log()}\nlogs in {logs}"
    finally:
        monkey.stop()
        gremlin.stop()
        ticker.stop()
        engine.stop()
    print(
        f"\nchaos[firings]: {len(stories.sent)} stories sent in {t_sent - t0:.1f} s, settled "
        f"{time.monotonic() - t_sent:.1f} s later; {len(monkey.kills)} workers killed "
        f"({Counter(task for title in monkey.killed_tasks for task in {*TARGETS, *EVALUATIONS} if task in title)}); "
        f"faults {dict(gremlin.injected)}; late answers given: product {stand_ins.product_slow.given}, Zendesk "
        f"{stand_ins.desk_slow.given}, SMTP {stand_ins.smtp.slow.given}; {counts(scratch)}"
    )
    assert monkey.failure is None, f"the chaos thread failed: {monkey.failure!r}"
    assert gremlin.failure is None, f"the fault thread failed: {gremlin.failure!r}"
    assert monkey.kills, "the monkey killed no worker: the run was too short to prove anything"
    assert len({w for w, status in answers.items() if 200 <= status < 300}) == len(stories.sent)

    rows = Rows.read(scratch)
    firings = assert_exactly_the_expected_firings(rows, stories)
    assert_every_firing_explains_itself(rows, stories, firings)
    sent = assert_every_action_delivered_or_dead(rows)
    assert_no_duplicate_at_the_stand_ins(stand_ins, sent)


# ----------------------------------------------------------------------------------------------- phases
def hold_timers(database: ScratchDatabase, *, hours: int) -> None:
    """Move the timer sweep's schedule `hours` ahead (0: due now): an operator's pause and resume."""
    database.execute(
        "UPDATE django_q_schedule SET next_run = now() + make_interval(hours => %s) WHERE func = %s",
        hours,
        "triggers.tasks.fire_due_timers",
    )


def counts(database: ScratchDatabase) -> dict[str, dict[str, int]]:
    return {
        name: dict(database.query(f"SELECT {column}, count(*) FROM {table} GROUP BY {column}"))  # noqa: S608
        for name, table, column in (
            ("events", "events_event", "status"),
            ("timers", "triggers_timer", "status"),
            ("firings", "triggers_firing", "status"),
            ("dispatches", "messaging_dispatch", "status"),
        )
    }


def wait_settled(database: ScratchDatabase, ticker: Ticker, *, timeout: float) -> bool:
    """Until no event waits, no timer is pending and no dispatch is due or failing, three polls in a row
    (an evaluation enqueued by a commit may still be on its way), or `timeout`. Each poll goes to the log."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        assert ticker.alive(), f"the ticker died: {ticker.log()}"
        now = counts(database)
        with (ticker.logs / "progress.log").open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {now}\n")
        busy = (
            set(now["events"]) & {"new", "processing", "error"}
            or "pending" in now["timers"]
            or set(now["dispatches"]) & {"pending", "failed"}
        )
        quiet = 0 if busy else quiet + 1
        if quiet == 3:
            return True
        time.sleep(2)
    return False


# ----------------------------------------------------------------------------------------------- reading
class Rows:
    """What the engine recorded, read once after the run."""

    def __init__(self, firings: list[dict], dispatches: list[dict], events: dict, memberships: dict) -> None:
        self.firings, self.dispatches, self.events, self.memberships = firings, dispatches, events, memberships

    @classmethod
    def read(cls, database: ScratchDatabase) -> Rows:
        firing_columns = ("id", "trigger", "workspace", "occurrence", "status", "reason", "explanation", "of")
        firings = [
            dict(zip(firing_columns, row, strict=True))
            for row in database.query(
                "SELECT f.id, t.key, f.workspace_key, f.occurrence, f.status, f.reason, f.explanation, "
                "f.escalation_of_id FROM triggers_firing f JOIN triggers_trigger t ON t.id = f.trigger_id "
                "WHERE t.key LIKE 'chaos%%'"
            )
        ]
        dispatch_columns = ("key", "firing", "channel", "status", "last_error", "attempts")
        dispatches = [
            dict(zip(dispatch_columns, row, strict=True))
            for row in database.query(
                "SELECT d.key, d.source_id, d.channel, d.status, d.last_error, d.attempts FROM messaging_dispatch d "
                "JOIN triggers_firing f ON f.id = d.source_id JOIN triggers_trigger t ON t.id = f.trigger_id "
                "WHERE d.source = 'firing' AND t.key LIKE 'chaos%%'"
            )
        ]
        events = {external: (pk, ws) for external, pk, ws in database.query(
            "SELECT external_id, id, workspace_key FROM events_event WHERE source = 'provisioning'"
        )}  # fmt: skip
        memberships = {pk: (ws, key) for pk, ws, key in database.query(
            "SELECT m.id, m.workspace_key, c.key FROM usage_cohortmembership m "
            "JOIN usage_cohort c ON c.id = m.cohort_id"
        )}  # fmt: skip
        return cls(firings, dispatches, events, memberships)

    def pk(self, webhook_id: str) -> int:
        return self.events[webhook_id][0]


# -------------------------------------------------------------------------------------------- assertions
def assert_exactly_the_expected_firings(rows: Rows, stories: Stories) -> dict[int, dict]:
    """Every expected occurrence has one firing, fired; nothing else fired. Returns the firings by id."""
    by_id = {firing["id"]: firing for firing in rows.firings}
    entered = {
        ws: pk for pk, (ws, key) in rows.memberships.items() if key == "chaos_limited"
    }  # one period each: the cohort is monotone in the events
    expected = {(WELCOME, ws, f"event:{rows.pk(wid)}") for ws, wid in stories.expected[WELCOME].items()}
    expected |= {(EXPORTS, ws, f"count:{rows.pk(wid)}") for ws, wid in stories.expected[EXPORTS].items()}
    expected |= {(STALLED, ws, f"stall:{rows.pk(wid)}") for ws, wid in stories.expected[STALLED].items()}
    expected |= {(SILENT, ws, f"silence:{rows.pk(wid)}") for ws, wid in stories.expected[SILENT].items()}
    expected |= {(LIMITED, ws, f"cohort:{entered.get(ws)}:entered") for ws in stories.limited}
    stalls = {f["id"] for f in rows.firings if f["trigger"] == STALLED and f["occurrence"].startswith("stall:")}
    expected |= {(STALLED, by_id[pk]["workspace"], f"escalation:{pk}") for pk in stalls}
    actual = Counter((f["trigger"], f["workspace"], f["occurrence"]) for f in rows.firings)
    lost = sorted(expected - actual.keys())
    extra = sorted(actual.keys() - expected)
    assert not lost, f"{len(lost)} expected firings missing (lost), e.g. {lost[:5]}"
    assert not extra, f"{len(extra)} firings no story asked for, e.g. {extra[:5]}"
    assert set(entered) == stories.limited, "the cohort's members are the workspaces with two plan-limit hits"
    not_fired = [
        (f["trigger"], f["workspace"], f["status"], f["reason"]) for f in rows.firings if f["status"] != "fired"
    ]
    assert not not_fired, f"{len(not_fired)} firings held back with no cap or quiet hours on, e.g. {not_fired[:5]}"
    return by_id


def assert_every_firing_explains_itself(rows: Rows, stories: Stories, by_id: dict[int, dict]) -> None:
    """Its kind, the version it was decided by, the events it names (of its own workspace), and the
    values of its kind: counts and threshold, the stall's start and unseen finish, the last activity, the
    cohort's why, the escalated firing and its zero activity."""
    owner = {pk: ws for pk, ws in rows.events.values()}
    problems = []
    for firing in rows.firings:
        why, trigger = firing["explanation"], firing["trigger"]
        kind = "escalation" if firing["of"] else KIND[trigger]
        checks = {
            "kind": why.get("kind") == kind,
            "version": isinstance(why.get("trigger_version"), int),
            "caps recorded": isinstance(why.get("caps"), list),
            "own events": all(owner.get(pk) == firing["workspace"] for pk in why.get("event_ids", [])),
        }
        if kind == "count":
            ids = [rows.pk(m.webhook_id) for m in stories.sent if m.workspace_id == firing["workspace"]]
            checks["count"] = why.get("count") == why.get("threshold") == 3 and set(why["event_ids"]) <= set(ids)
        elif kind == "stall":
            checks["stall"] = why.get("event_ids") == [_named(firing)] and why.get("finish_seen") is False
        elif kind == "silence":
            checks["silence"] = why.get("event_ids") == [_named(firing)] and why.get("for_seconds") == 3600
        elif kind == "cohort":
            checks["cohort"] = why.get("cohort") == "chaos_limited" and bool(why.get("why"))
        elif kind == "escalation":
            original = by_id[firing["of"]]
            checks["escalation"] = (
                why.get("firing_id") == original["id"]
                and why.get("activity_since_firing") == 0
                and why.get("original", {}).get("kind") == "stall"
                and why.get("recipient") == f"team:{TEAM}"
            )
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            problems.append((trigger, firing["occurrence"], failed, why))
    assert not problems, f"{len(problems)} firings do not explain themselves, e.g. {problems[:3]}"


def _named(firing: dict) -> int:
    """The event id a stall's or a silence's occurrence names (stall:<id>, silence:<id>)."""
    return int(firing["occurrence"].split(":")[1])


def assert_every_action_delivered_or_dead(rows: Rows) -> dict[str, dict]:
    """One dispatch per action of each fired firing, sent or dead with its error. Returns the sent ones."""
    by_firing: dict[int, list[dict]] = defaultdict(list)
    for dispatch in rows.dispatches:
        by_firing[dispatch["firing"]].append(dispatch)
    wrong = []
    for firing in rows.firings:
        channels = ["ticket"] if firing["of"] else CHANNELS[firing["trigger"]]
        keys = sorted(d["key"] for d in by_firing.get(firing["id"], []))
        if keys != sorted(f"firing-{firing['id']}-{channel}-{n}" for n, channel in enumerate(channels)):
            wrong.append((firing["trigger"], firing["occurrence"], keys))
    assert not wrong, f"{len(wrong)} firings without exactly their dispatches, e.g. {wrong[:5]}"
    dead = [d for d in rows.dispatches if d["status"] == "dead"]
    unexplained = [
        d for d in rows.dispatches if d["status"] != "sent" and not (d["status"] == "dead" and d["last_error"])
    ]
    assert not unexplained, f"dispatches neither delivered nor visibly dead: {unexplained[:5]}"
    print(f"chaos[firings]: {len(rows.dispatches)} dispatches, {len(dead)} dead: {[d['last_error'] for d in dead][:5]}")
    return {d["key"]: d for d in rows.dispatches if d["status"] == "sent"}


def assert_no_duplicate_at_the_stand_ins(stand_ins: StandIns, sent: dict[str, dict]) -> None:
    """Each sent dispatch arrived, under its own key, and no message arrived under two keys."""
    arrived = {
        "in_app": arrived_in_app(stand_ins),
        "email": arrived_mail(stand_ins),
        "ticket": arrived_tickets(stand_ins),
    }
    copies = {}
    for channel, items in arrived.items():
        keys_by_firing: dict[int, set[str]] = defaultdict(set)
        for item in items:
            keys_by_firing[item.firing_id].add(item.key)
        twice = {firing: keys for firing, keys in keys_by_firing.items() if len(keys) > 1}
        assert not twice, f"{channel}: one message under several keys (a duplicate): {list(twice.items())[:5]}"
        want = {key for key, d in sent.items() if d["channel"] == channel}
        got = {_dispatch_key(item) for item in items}
        assert want <= got, f"{channel}: {len(want - got)} sent dispatches never arrived, e.g. {sorted(want - got)[:5]}"
        copies[channel] = len(items) - len({item.key for item in items})
    tickets = Counter(item.key for item in arrived["ticket"])
    assert not {key: n for key, n in tickets.items() if n > 1}, "two tickets for one escalation"
    print(
        f"chaos[firings]: arrived { ({c: len(i) for c, i in arrived.items()}) }; resent copies recognised by key: "
        f"in-app {len(stand_ins.product.state.duplicates)} (dropped by the product), email {copies['email']} "
        f"(same Message-ID), tickets {ticket_comments(stand_ins)} (a comment on the open ticket)"
    )


def _dispatch_key(item: Arrived) -> str:
    """The dispatch key an arrival carries: the webhook-id and external_id are the key, the Message-ID
    is `<key@domain>`."""
    return item.key.removeprefix("<").partition("@")[0] if item.channel == "email" else item.key

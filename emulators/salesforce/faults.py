"""Fault injection, per emulator (``emulator.faults``).

Every helper adds a rule and returns it (``rule.hits``, ``rule.cancel()``). A rule targets calls by
``method``, ``path`` (an fnmatch pattern such as ``"*/composite/sobjects/*"`` or a compiled regex) and
``kind`` (the call's label in the request log: ``"collection_upsert"``, ``"sobject_upsert"``,
``"query"``, ``"convert_lead"``, ``"token"``...) and fires on the next ``count`` matching calls
(``None``: every one), optionally after skipping ``skip`` of them or with ``probability`` p drawn from a
seeded RNG. Without ``kind``, a rule never touches the token endpoint, and per-record rules wait for a
call that writes records::

    emulator.faults.server_error(503, count=2, kind="collection_upsert")
    emulator.faults.unable_to_lock_row(records=[1])          # record 1 of the next write fails
    emulator.faults.timeout(sleep=0.5, kind="query")          # stall, then drop the connection
    emulator.faults.commit_then_timeout(kind="collection_upsert", sleep=0.5)
    emulator.faults.random_mix(rate=0.05, seed=7)

Kinds of effect: *latency* (added before the call), *terminal* (the call fails before it runs: 5xx,
timeout, whole-call UNABLE_TO_LOCK_ROW, REQUEST_LIMIT_EXCEEDED, INVALID_SESSION_ID), *record* (chosen
records fail with a per-record error: UNABLE_TO_LOCK_ROW, DUPLICATE_VALUE,
FIELD_CUSTOM_VALIDATION_EXCEPTION, any code) and *commit-then-timeout* (the write is applied, then the
connection stalls and closes with no answer).
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import SFError, unable_to_lock_row

TERMINAL = {"server_error", "timeout", "lock_call", "request_limit", "invalid_session"}
RANDOM_KINDS = ("server_error", "unable_to_lock_row", "timeout", "commit_then_timeout")
WRITE_KINDS = {
    "sobject_create",
    "sobject_update",
    "sobject_upsert",
    "collection_create",
    "collection_update",
    "collection_upsert",
    "convert_lead",
    "composite",
}


@dataclass
class CallInfo:
    method: str
    path: str
    kind: str


@dataclass
class Fault:
    action: str
    method: str | None = None
    path: str | re.Pattern[str] | None = None
    kind: str | tuple[str, ...] | None = None
    count: int | None = 1
    skip: int = 0
    probability: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    seen: int = 0
    cancelled: bool = False

    @property
    def exhausted(self) -> bool:
        return self.cancelled or (self.count is not None and self.hits >= self.count)

    def cancel(self) -> None:
        self.cancelled = True

    def matches(self, call: CallInfo) -> bool:
        if self.method is not None and self.method.upper() != call.method.upper():
            return False
        if self.kind is not None:
            kinds = (self.kind,) if isinstance(self.kind, str) else self.kind
            if call.kind not in kinds:
                return False
        elif call.kind == "token":
            return False  # the token endpoint is only hit when a rule names kind="token"
        elif self.action == "record_error" and call.kind not in WRITE_KINDS:
            return False  # per-record faults wait for a call that writes records
        if self.path is not None:
            if isinstance(self.path, re.Pattern):
                return self.path.search(call.path) is not None
            return fnmatch.fnmatchcase(call.path, self.path)
        return True

    # per-record selection
    def selects(self, index: int, body: dict[str, Any]) -> bool:
        records = self.params.get("records")
        where: Callable[[dict[str, Any]], bool] | None = self.params.get("where")
        if records is not None and index not in records:
            return False
        return where is None or bool(where(body))

    def record_error(self) -> SFError:
        factory: Callable[[], SFError] = self.params["error"]
        return factory()


@dataclass
class Plan:
    """What the injected faults do to one call."""

    latency: float = 0.0
    terminal: Fault | None = None
    records: list[Fault] = field(default_factory=list)
    commit_then_timeout: Fault | None = None
    applied: list[str] = field(default_factory=list)

    def record_fault(self, index: int, body: dict[str, Any]) -> SFError | None:
        for rule in self.records:
            if rule.selects(index, body):
                if rule.action not in self.applied:
                    self.applied.append(rule.action)
                return rule.record_error()
        return None


class Faults:
    def __init__(self, *, timeout_sleep: float = 30.0, seed: int | None = None) -> None:
        self.timeout_sleep = timeout_sleep
        self.rng = random.Random(seed)
        self.rules: list[Fault] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ rule helpers
    def add(self, action: str, *, count: int | None = 1, **kw: Any) -> Fault:
        match_keys = ("method", "path", "kind", "skip", "probability")
        rule = Fault(action, count=count, **{k: kw.pop(k) for k in match_keys if k in kw}, params=kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def latency(self, seconds: float, *, count: int | None = None, **match: Any) -> Fault:
        """Add ``seconds`` before every matching call (all calls unless narrowed)."""
        return self.add("latency", seconds=seconds, count=count, **match)

    def server_error(self, status: int = 503, *, error_code: str | None = None, **match: Any) -> Fault:
        """Answer 500/503 with ``[{"errorCode": "SERVER_UNAVAILABLE" | "UNKNOWN_EXCEPTION", ...}]``."""
        return self.add("server_error", status=status, error_code=error_code, **match)

    def timeout(self, *, sleep: float | None = None, **match: Any) -> Fault:
        """Stall ``sleep`` seconds (default ``timeout_sleep``) without running the call, then drop it."""
        return self.add("timeout", sleep=sleep, **match)

    def commit_then_timeout(self, *, sleep: float | None = None, **match: Any) -> Fault:
        """Run the call (writes are applied), then stall and close the connection with no answer."""
        return self.add("commit_then_timeout", sleep=sleep, **match)

    def request_limit_exceeded(self, **match: Any) -> Fault:
        """403 ``REQUEST_LIMIT_EXCEEDED`` for matching calls (the real daily limit is ``set_api_limit``)."""
        return self.add("request_limit", **match)

    def invalid_session(self, **match: Any) -> Fault:
        """Expire every issued token, then answer 401 ``INVALID_SESSION_ID`` (a fresh token works again)."""
        return self.add("invalid_session", **match)

    def unable_to_lock_row(
        self,
        *,
        scope: str = "record",
        records: Iterable[int] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> Fault:
        """``scope="record"``: the selected records (default all) fail with UNABLE_TO_LOCK_ROW;
        ``scope="call"``: the whole call answers 400 UNABLE_TO_LOCK_ROW."""
        if scope == "call":
            return self.add("lock_call", **match)
        return self.record_error("UNABLE_TO_LOCK_ROW", None, records=records, where=where, **match)

    def duplicate_value(
        self,
        *,
        field_name: str = "Lifecycle_Engine_ID__c",
        records: Iterable[int] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> Fault:
        message = f"duplicate value found: {field_name} duplicates value on record with id: 0015g00000DuPLiCAAE"
        return self.record_error("DUPLICATE_VALUE", message, records=records, where=where, **match)

    def validation_error(
        self,
        message: str = "This record failed a validation rule.",
        *,
        fields: Iterable[str] = (),
        records: Iterable[int] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> Fault:
        return self.record_error(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION", message, fields=fields, records=records, where=where, **match
        )

    def record_error(
        self,
        code: str,
        message: str | None,
        *,
        fields: Iterable[str] = (),
        records: Iterable[int] | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> Fault:
        """Selected records of the next matching write fail with ``code`` (per-record in collections,
        a 400 for single-record calls, a failed result for convertLead)."""
        field_list = list(fields)

        def error() -> SFError:
            if code == "UNABLE_TO_LOCK_ROW" and message is None:
                return unable_to_lock_row()
            return SFError(code, message or code, list(field_list))

        chosen = None if records is None else set(records)
        return self.add("record_error", records=chosen, where=where, error=error, code=code, **match)

    def random_mix(
        self,
        rate: float = 0.05,
        *,
        seed: int | None = None,
        kinds: Iterable[str] = RANDOM_KINDS,
        sleep: float | None = None,
        **match: Any,
    ) -> Fault:
        """For chaos and bench: each matching API call (token calls excluded unless ``kind`` says so) fails
        with probability ``rate``, with one of ``kinds`` chosen at random."""
        if seed is not None:
            self.rng.seed(seed)
        return self.add(
            "random", count=match.pop("count", None), probability=rate, kinds=tuple(kinds), sleep=sleep, **match
        )

    # ------------------------------------------------------------------ evaluation
    def plan(self, call: CallInfo) -> Plan:
        plan = Plan()
        with self._lock:
            for rule in self.rules:
                if rule.exhausted or not rule.matches(call):
                    continue
                is_terminal = rule.action in TERMINAL or rule.action == "random"
                if is_terminal and plan.terminal is not None:
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability is not None and self.rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                self._apply(rule, plan, call)
        return plan

    def _apply(self, rule: Fault, plan: Plan, call: CallInfo) -> None:
        if rule.action == "random":
            rule = self._random_effect(rule, call)
        if rule.action == "latency":
            plan.latency += float(rule.params["seconds"])
            plan.applied.append("latency")
        elif rule.action in TERMINAL:
            if plan.terminal is None:
                plan.terminal = rule
                plan.applied.append(rule.action)
        elif rule.action == "record_error":
            plan.records.append(rule)
        elif rule.action == "commit_then_timeout" and plan.commit_then_timeout is None:
            plan.commit_then_timeout = rule
            plan.applied.append("commit_then_timeout")

    def _random_effect(self, rule: Fault, call: CallInfo) -> Fault:
        choice = self.rng.choice(rule.params["kinds"])
        sleep = rule.params.get("sleep")
        if choice == "server_error":
            return Fault("server_error", params={"status": self.rng.choice((500, 503)), "error_code": None})
        if choice == "timeout":
            return Fault("timeout", params={"sleep": sleep})
        if choice == "commit_then_timeout":
            return Fault("commit_then_timeout", params={"sleep": sleep})
        if choice == "unable_to_lock_row" and call.kind.startswith("collection"):
            return Fault(
                "record_error",
                params={"records": None, "where": lambda _b: self.rng.random() < 0.5, "error": unable_to_lock_row},
            )
        if choice == "unable_to_lock_row":
            return Fault("lock_call")
        return Fault(choice)

    def sleep_for(self, rule: Fault) -> float:
        value = rule.params.get("sleep")
        return float(value) if value is not None else float(self.timeout_sleep)

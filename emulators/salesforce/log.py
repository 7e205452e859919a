"""The request log (``emulator.requests_log``): one entry per HTTP request, for assertions."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    method: str
    path: str
    query: str
    kind: str  # token, sobject_create, sobject_get, sobject_update, sobject_upsert, sobject_delete,
    # collection_create, collection_update, collection_upsert, collection_delete, query, limits,
    # composite, convert_lead, soap, describe, versions, unknown
    status: int | None = None  # None: no answer was sent (timeout / commit-then-timeout)
    duration: float = 0.0
    record_count: int = 0  # records sent in a write, returned by a query, leads in a convertLead
    object_name: str | None = None
    faults: list[str] = field(default_factory=list)
    connection: int = 0  # the TLS connection it came on (keep-alive reuse shows as repeated numbers)
    body: Any = None  # the parsed JSON body (or SOAP operation name)
    response: Any = None

    def collections(self) -> list[tuple[str, list[dict], Any]]:
        """(url or kind, records sent, answer) of each collection write in this call: the call itself, or
        each collection subrequest of a composite call (needs the emulator's ``log_bodies``)."""
        if self.kind.startswith("collection_") and isinstance(self.body, dict):
            return [(self.kind, self.body.get("records") or [], self.response)]
        if self.kind != "composite" or not isinstance(self.body, dict):
            return []
        parts = self.response.get("compositeResponse", []) if isinstance(self.response, dict) else []  # else refused
        answers = {a.get("referenceId"): a.get("body") for a in parts}
        return [
            (sub.get("url", ""), sub["body"].get("records") or [], answers.get(sub.get("referenceId")))
            for sub in self.body.get("compositeRequest", [])
            if isinstance(sub, dict) and isinstance(sub.get("body"), dict) and "records" in sub["body"]
        ]

    def record_errors(self) -> list[str]:
        """The statusCode of each record a collection write (composite subrequests included) refused."""
        return [
            (result.get("errors") or [{}])[0].get("statusCode", "?")
            for _, _, answer in self.collections()
            if isinstance(answer, list)
            for result in answer
            if isinstance(result, dict) and not result.get("success", True)
        ]

    @property
    def is_api(self) -> bool:
        """Counts against the org's API limit: every REST and SOAP call, not the token endpoint."""
        return self.kind not in ("token", "versions")


class RequestLog:
    def __init__(self, maxlen: int | None = None) -> None:
        """``maxlen`` keeps only the newest entries (long demo and bench runs)."""
        self._entries: deque[Entry] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __getitem__(self, index: int) -> Entry:
        return self.entries()[index]

    def api_calls(
        self,
        kind: str | tuple[str, ...] | None = None,
        *,
        method: str | None = None,
        object_name: str | None = None,
        status: int | None = None,
    ) -> list[Entry]:
        """API calls (token requests excluded), optionally narrowed by kind(s), method, object, status."""
        kinds = (kind,) if isinstance(kind, str) else kind
        return [
            e
            for e in self.entries()
            if e.is_api
            and (kinds is None or e.kind in kinds)
            and (method is None or e.method == method.upper())
            and (object_name is None or e.object_name == object_name)
            and (status is None or e.status == status)
        ]

    def count(self, kind: str | tuple[str, ...] | None = None, **kw: Any) -> int:
        return len(self.api_calls(kind, **kw))

    def records_sent(self, kind: str | tuple[str, ...] | None = None) -> int:
        return sum(e.record_count for e in self.api_calls(kind))

    def token_requests(self) -> list[Entry]:
        return [e for e in self.entries() if e.kind == "token"]

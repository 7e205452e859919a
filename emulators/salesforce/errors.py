"""Salesforce error shapes.

Two shapes exist on the wire and the emulator keeps them apart exactly as Salesforce does:
- a failed single-record REST call answers an HTTP error with a list of
  ``{"message", "errorCode", "fields"}`` objects;
- a per-record failure inside an sObject Collections answer (HTTP 200) is a SaveResult /
  UpsertResult whose ``errors`` are ``{"statusCode", "message", "fields"}`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SFError(Exception):
    """One Salesforce error. ``status`` is the HTTP status when it fails a whole call."""

    code: str
    message: str
    fields: list[str] = field(default_factory=list)
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def rest_body(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}

    def record_body(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


class RequestError(Exception):
    """Fails the whole HTTP call with ``status`` and a list of errors (REST shape)."""

    def __init__(self, status: int, errors: list[SFError] | SFError):
        self.status = status
        self.errors = errors if isinstance(errors, list) else [errors]
        super().__init__("; ".join(str(e) for e in self.errors))

    def body(self) -> list[dict[str, Any]]:
        return [e.rest_body() for e in self.errors]

    @classmethod
    def of(cls, error: SFError) -> RequestError:
        return cls(error.status, [error])


def not_found(message: str = "The requested resource does not exist") -> RequestError:
    return RequestError(404, SFError("NOT_FOUND", message, status=404))


def malformed_query(message: str) -> SFError:
    return SFError("MALFORMED_QUERY", message)


def json_parser_error(message: str) -> RequestError:
    return RequestError(400, SFError("JSON_PARSER_ERROR", message))


def unable_to_lock_row(record_id: str | None = None) -> SFError:
    target = record_id or "this record"
    return SFError("UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records: {target}")


def request_limit_exceeded() -> SFError:
    return SFError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", status=403)


def invalid_session() -> SFError:
    return SFError("INVALID_SESSION_ID", "Session expired or invalid", status=401)


def server_unavailable(status: int = 503, code: str | None = None) -> SFError:
    if code is None:
        code = "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
    message = (
        "Server temporarily unavailable. Please try again later."
        if code == "SERVER_UNAVAILABLE"
        else "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1357924680-13579 (-1357924680)"
    )
    return SFError(code, message, status=status)


ROLLED_BACK = SFError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)

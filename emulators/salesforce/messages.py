"""Request and response values passed between the HTTP layer and the API handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .errors import RequestError, json_parser_error
from .faults import Plan

JSON_TYPE = "application/json;charset=UTF-8"
XML_TYPE = "text/xml;charset=UTF-8"


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    api_version: str = ""
    plan: Plan = field(default_factory=Plan)
    record_count: int = 0
    object_name: str | None = None
    parsed_body: Any = None
    page: tuple[str, str] = ("", "")  # (object, id) of a record page request

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        if not self.body.strip():
            raise json_parser_error("No content to map due to end-of-input")
        try:
            self.parsed_body = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise json_parser_error(f"Unexpected character: {exc}") from None
        return self.parsed_body

    @property
    def api_major(self) -> float:
        try:
            return float(self.api_version)
        except ValueError:
            return 0.0


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    data: Any = None  # the JSON value sent, for the request log
    drop_before: float | None = None  # timeout: stall this long, then close without answering
    drop_after: float | None = None  # commit-then-timeout: the call ran; stall, then close

    @classmethod
    def json(cls, status: int, data: Any) -> Response:
        return cls(status, json.dumps(data).encode(), data=data)

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", content_type=None)

    @classmethod
    def error(cls, err: RequestError) -> Response:
        return cls.json(err.status, err.body())

    @classmethod
    def xml(cls, status: int, body: bytes) -> Response:
        return cls(status, body, content_type=XML_TYPE)

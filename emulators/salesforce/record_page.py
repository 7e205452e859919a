"""A plain record page at Salesforce's own address (`/lightning/r/<Object>/<Id>/view`), so the links the
engine's pages show for a record work against the emulator too: every field of the record, and lookups
linked to their own pages. Loopback-only development tool: it asks for no login, like the rest of the demo."""

from __future__ import annotations

import html
from typing import Any

from .messages import Response
from .store import Store

HTML_TYPE = "text/html; charset=utf-8"
# The page carries its one stylesheet inline; nothing else may load or run.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:60rem;color:#1b1f24}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;"
    "vertical-align:top;overflow-wrap:anywhere}th{width:16rem;color:#555;font-weight:500}.note{color:#666}"
)


def record_path(parts: list[str]) -> tuple[str, str] | None:
    """(object, id) for ['', 'lightning', 'r', Object, Id, 'view'], else None."""
    if len(parts) == 6 and parts[1:3] == ["lightning", "r"] and parts[5] == "view" and parts[3] and parts[4]:
        return parts[3], parts[4]
    return None


def record_page(store: Store, object_name: str, record_id: str) -> Response:
    record = store.get(record_id)
    if record is None or _object_of(store, record_id) != object_name:
        return _page(404, f"No {object_name} {record_id}", "<p class=note>No such record in the emulator "
                     "(never synced, or deleted).</p>")  # fmt: skip
    rows = "".join(
        f"<tr><th scope=row>{html.escape(name)}</th><td>{_cell(store, value)}</td></tr>"
        for name, value in sorted(record.items())
    )
    title = record.get("Name") or record.get("Email") or record_id
    body = (
        f"<p class=note>{html.escape(object_name)} · Salesforce emulator (a local stand-in)</p>"
        f"<table><tbody>{rows}</tbody></table>"
    )
    return _page(200, f"{object_name}: {title}", body)


def _cell(store: Store, value: Any) -> str:
    if isinstance(value, str) and len(value) in (15, 18) and value.isalnum():
        kind = _object_of(store, value)
        if kind and store.get(value) is not None:
            return f'<a href="/lightning/r/{html.escape(kind)}/{html.escape(value)}/view">{html.escape(value)}</a>'
    return "<span class=note>—</span>" if value is None else html.escape(str(value))


def _object_of(store: Store, record_id: str) -> str:
    obj = store.schema.by_prefix(record_id[:3])
    return obj.name if obj is not None else ""


def _page(status: int, title: str, body: str) -> Response:
    document = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(status, document.encode(), content_type=HTML_TYPE, headers={"Content-Security-Policy": PAGE_POLICY})

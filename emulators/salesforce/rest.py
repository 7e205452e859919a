"""REST API resources under ``/services/data/v<version>/``: sobjects, upsert by external id, sObject
Collections, query and limits, with Salesforce's status codes and error bodies."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import composite, soql
from . import schema as s
from .auth import Limits
from .errors import RequestError, SFError, not_found
from .messages import Request, Response
from .store import Store

COLLECTION_LIMIT = 200
Handler = Callable[[Request], Response]


@dataclass
class Route:
    kind: str
    handler: Handler | None
    object_name: str | None = None


def method_not_allowed(method: str, allowed: str) -> Route:
    def answer(_req: Request) -> Response:
        return Response.error(
            RequestError(
                405,
                SFError("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}", status=405),
            )
        )

    return Route("unknown", answer)


class RestAPI:
    def __init__(self, store: Store, limits: Limits, *, query_batch_size: int = 2000) -> None:
        self.store = store
        self.limits = limits
        self.query_batch_size = query_batch_size
        self._cursors: dict[str, tuple[soql.Query, list[dict[str, Any]], int]] = {}
        self._cursor_lock = threading.Lock()

    def reset(self) -> None:
        with self._cursor_lock:
            self._cursors.clear()

    # ------------------------------------------------------------------ routing
    def route(self, method: str, version: str, segments: list[str]) -> Route:
        seg = [unquote(p) for p in segments if p != ""]
        n = len(seg)
        if n == 0:
            return Route("resources", self.resources) if method == "GET" else method_not_allowed(method, "GET,HEAD")
        head = seg[0]
        if head == "limits" and n == 1:
            return Route("limits", self.get_limits) if method == "GET" else method_not_allowed(method, "GET,HEAD")
        if head == "query" and n <= 2:
            if method != "GET":
                return method_not_allowed(method, "GET,HEAD")
            return Route("query", self.query if n == 1 else lambda r: self.query_more(r, seg[1]))
        if head == "sobjects":
            return self._sobject_route(method, seg)
        if head == "composite" and n >= 2 and seg[1] == "sobjects":
            return self._collection_route(method, seg)
        if head == "composite" and n == 1:
            if method != "POST":
                return method_not_allowed(method, "POST")
            return Route("composite", lambda r: composite.run(self, r))
        return Route("unknown", lambda _r: Response.error(not_found()))

    def _sobject_route(self, method: str, seg: list[str]) -> Route:
        n = len(seg)
        if n == 1:
            return Route("describe", self.describe_global)
        obj = self.store.object_def(seg[1])
        if obj is None:
            return Route("unknown", lambda _r: Response.error(not_found()))
        name = obj.name
        if n == 2:
            if method == "POST":
                return Route("sobject_create", lambda r: self.create(r, obj), name)
            if method == "GET":
                return Route("describe", lambda r: self.basic_info(r, obj), name)
            return method_not_allowed(method, "GET,HEAD,POST")
        if n == 3 and seg[2] == "describe":
            return Route("describe", lambda r: self.describe(r, obj), name)
        if n == 3:
            rid = seg[2]
            if method == "POST" and rid == "Id":
                return Route("sobject_create", lambda r: self.create(r, obj), name)
            if method == "GET":
                return Route("sobject_get", lambda r: self.retrieve(r, obj, rid), name)
            if method == "PATCH":
                return Route("sobject_update", lambda r: self.update(r, obj, rid), name)
            if method == "DELETE":
                return Route("sobject_delete", lambda r: self.delete(r, obj, rid), name)
            return method_not_allowed(method, "GET,HEAD,PATCH,DELETE")
        if n == 4:
            ext, value = seg[2], seg[3]
            if method == "PATCH":
                return Route("sobject_upsert", lambda r: self.upsert(r, obj, ext, value), name)
            if method == "GET":
                return Route("sobject_get", lambda r: self.retrieve_by_external(r, obj, ext, value), name)
            if method == "DELETE":
                return Route("sobject_delete", lambda r: self.delete_by_external(r, obj, ext, value), name)
            return method_not_allowed(method, "GET,HEAD,PATCH,DELETE")
        return Route("unknown", lambda _r: Response.error(not_found()))

    def _collection_route(self, method: str, seg: list[str]) -> Route:
        n = len(seg)
        if n == 2:
            if method == "POST":
                return Route("collection_create", lambda r: self.collection(r, "create"))
            if method == "PATCH":
                return Route("collection_update", lambda r: self.collection(r, "update"))
            if method == "DELETE":
                return Route("collection_delete", self.collection_delete)
            return method_not_allowed(method, "DELETE,PATCH,POST")
        obj = self.store.object_def(seg[2])
        if obj is None:
            return Route("unknown", lambda _r: Response.error(not_found()))
        if n == 3 and method in ("GET", "POST"):
            return Route("collection_retrieve", lambda r: self.collection_retrieve(r, obj), obj.name)
        if n == 4 and method == "PATCH":
            ext = seg[3]
            return Route("collection_upsert", lambda r: self.collection(r, "upsert", obj, ext), obj.name)
        if n in (3, 4):
            return method_not_allowed(method, "PATCH" if n == 4 else "GET,POST")
        return Route("unknown", lambda _r: Response.error(not_found()))

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def url(version: str, object_name: str, rid: str) -> str:
        return f"/services/data/v{version}/sobjects/{object_name}/{rid}"

    def view(self, req: Request, obj: s.ObjectDef, record: dict[str, Any], fields: list[str] | None = None) -> dict:
        out: dict[str, Any] = {
            "attributes": {"type": obj.name, "url": self.url(req.api_version, obj.name, record["Id"])}
        }
        names = fields if fields is not None else list(obj.fields)
        for name in names:
            out[name] = record.get(name)
        return out

    @staticmethod
    def _record_fault(req: Request, index: int, body: Any) -> SFError | None:
        return req.plan.record_fault(index, body if isinstance(body, dict) else {})

    # ------------------------------------------------------------------ resources
    def resources(self, req: Request) -> Response:
        base = f"/services/data/v{req.api_version}"
        return Response.json(
            200,
            {
                "limits": f"{base}/limits",
                "query": f"{base}/query",
                "sobjects": f"{base}/sobjects",
                "composite": f"{base}/composite",
            },
        )

    def get_limits(self, _req: Request) -> Response:
        return Response.json(200, self.limits.body())

    def describe_global(self, req: Request) -> Response:
        sobjects = [
            {
                "name": o.name,
                "label": o.name.removesuffix("__c").replace("_", " "),
                "keyPrefix": o.key_prefix,
                "custom": o.name.endswith("__c"),
                "urls": {"sobject": f"/services/data/v{req.api_version}/sobjects/{o.name}"},
            }
            for o in self.store.schema.objects.values()
        ]
        return Response.json(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def basic_info(self, req: Request, obj: s.ObjectDef) -> Response:
        recent = [self.view(req, obj, r, ["Id", "Name"]) for r in self.store.records(obj.name)[-5:]]
        return Response.json(
            200, {"objectDescribe": {"name": obj.name, "keyPrefix": obj.key_prefix}, "recentItems": recent}
        )

    def describe(self, _req: Request, obj: s.ObjectDef) -> Response:
        fields = [
            {
                "name": f.name,
                "label": f.label,
                "type": f.type,
                "nillable": not f.required,
                "createable": not f.readonly,
                "updateable": not f.readonly,
                "externalId": f.external_id and f.name != "Id",
                "idLookup": f.external_id,
                "unique": f.unique,
                "referenceTo": list(f.polymorphic) or ([f.reference_to] if f.reference_to else []),
                "relationshipName": f.relationship_name,
                "picklistValues": [{"value": v, "label": v, "active": True} for v in f.picklist],
                "restrictedPicklist": f.restricted,
            }
            for f in obj.fields.values()
        ]
        return Response.json(
            200, {"name": obj.name, "keyPrefix": obj.key_prefix, "custom": obj.name.endswith("__c"), "fields": fields}
        )

    # ------------------------------------------------------------------ single records
    def create(self, req: Request, obj: s.ObjectDef) -> Response:
        body = req.json()
        req.record_count = 1
        try:
            rid = self.store.create(obj.name, body, self._record_fault(req, 0, body))
        except SFError as err:
            return Response.error(RequestError.of(err))
        return Response.json(201, {"id": rid, "success": True, "errors": []})

    def retrieve(self, req: Request, obj: s.ObjectDef, rid: str) -> Response:
        with self.store.lock:
            record = self.store.existing(obj, rid)
            fields = self._fields_param(req, obj)
            req.record_count = 1
            return Response.json(200, self.view(req, obj, record, fields))

    def _fields_param(self, req: Request, obj: s.ObjectDef) -> list[str] | None:
        raw = req.param("fields")
        if not raw:
            return None
        names = []
        for name in raw.split(","):
            fdef = obj.get_field(name.strip())
            if fdef is None:
                raise RequestError(400, soql.no_such_column(name.strip(), obj))
            names.append(fdef.name)
        return names

    def retrieve_by_external(self, req: Request, obj: s.ObjectDef, ext: str, value: str) -> Response:
        with self.store.lock:
            fdef = self.store.external_field(obj, ext)
            matches = self.store.match_external(obj, fdef, value)
            if not matches:
                raise not_found()
            if len(matches) > 1:
                return Response.json(300, [self.url(req.api_version, obj.name, m) for m in matches])
            return self.retrieve(req, obj, matches[0])

    def update(self, req: Request, obj: s.ObjectDef, rid: str) -> Response:
        body = req.json()
        req.record_count = 1
        try:
            self.store.update(obj.name, rid, body, self._record_fault(req, 0, body))
        except SFError as err:
            return Response.error(RequestError.of(err))
        return Response.empty(204)

    def upsert(self, req: Request, obj: s.ObjectDef, ext: str, value: str) -> Response:
        body = req.json()
        req.record_count = 1
        try:
            rid, created, matches = self.store.upsert(obj.name, ext, value, body, self._record_fault(req, 0, body))
        except SFError as err:
            return Response.error(RequestError.of(err))
        if len(matches) > 1:
            return Response.json(300, [self.url(req.api_version, obj.name, m) for m in matches])
        result = {"id": rid, "success": True, "errors": [], "created": created}
        if created:
            return Response.json(
                201, result if req.api_major >= 46 else {k: result[k] for k in ("id", "success", "errors")}
            )
        # Since API 46.0 an update through upsert answers 200 with the result; before, 204 and no body.
        return Response.json(200, result) if req.api_major >= 46 else Response.empty(204)

    def delete(self, req: Request, obj: s.ObjectDef, rid: str) -> Response:
        req.record_count = 1
        self.store.delete(obj.name, rid)
        return Response.empty(204)

    def delete_by_external(self, req: Request, obj: s.ObjectDef, ext: str, value: str) -> Response:
        with self.store.lock:
            fdef = self.store.external_field(obj, ext)
            matches = self.store.match_external(obj, fdef, value)
            if not matches:
                raise not_found()
            if len(matches) > 1:
                return Response.json(300, [self.url(req.api_version, obj.name, m) for m in matches])
            return self.delete(req, obj, matches[0])

    # ------------------------------------------------------------------ sObject Collections
    def collection(self, req: Request, op: str, obj: s.ObjectDef | None = None, ext: str | None = None) -> Response:
        body = req.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise RequestError(400, SFError("JSON_PARSER_ERROR", "The request body must contain a records array"))
        req.record_count = len(records)
        attributes = [r.get("attributes") for r in records if isinstance(r, dict)]
        types = {a.get("type") for a in attributes if isinstance(a, dict) and isinstance(a.get("type"), str)}
        if obj is not None or len(types) == 1:
            req.object_name = obj.name if obj is not None else types.pop()
        if len(records) > COLLECTION_LIMIT:
            raise RequestError(
                400,
                SFError(
                    "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
                ),
            )
        all_or_none = bool(body.get("allOrNone", False))
        results = self.store.collection(
            op,
            records,
            all_or_none=all_or_none,
            object_name=obj.name if obj else None,
            ext_field=ext,
            record_fault=lambda i, b: self._record_fault(req, i, b),
        )
        return Response.json(200, results)

    def collection_delete(self, req: Request) -> Response:
        raw = req.param("ids") or ""
        record_ids = [i for i in raw.split(",") if i]
        req.record_count = len(record_ids)
        if len(record_ids) > COLLECTION_LIMIT:
            raise RequestError(
                400,
                SFError(
                    "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
                ),
            )
        all_or_none = (req.param("allOrNone") or "false").lower() == "true"
        return Response.json(200, self.store.collection_delete(record_ids, all_or_none=all_or_none))

    def collection_retrieve(self, req: Request, obj: s.ObjectDef) -> Response:
        if req.method == "POST":
            body = req.json()
            record_ids, raw_fields = body.get("ids") or [], body.get("fields") or []
        else:
            record_ids = [i for i in (req.param("ids") or "").split(",") if i]
            raw_fields = [f for f in (req.param("fields") or "").split(",") if f]
        fields = []
        for name in raw_fields:
            fdef = obj.get_field(name.strip())
            if fdef is None:
                raise RequestError(400, soql.no_such_column(name.strip(), obj))
            fields.append(fdef.name)
        out: list[dict[str, Any] | None] = []
        with self.store.lock:
            for raw_id in record_ids:
                record = self.store.get(obj.name, raw_id)
                out.append(self.view(req, obj, record, ["Id", *fields]) if record else None)
        req.record_count = sum(1 for r in out if r)
        return Response.json(200, out)

    # ------------------------------------------------------------------ query
    def query(self, req: Request) -> Response:
        text = req.param("q")
        if not text:
            raise RequestError(400, SFError("MALFORMED_QUERY", "A query string has to be specified"))
        try:
            parsed = soql.parse(self.store.schema, text)
        except SFError as err:
            raise RequestError(400, err) from None
        req.object_name = parsed.obj.name
        with self.store.lock:
            rows = soql.execute(parsed, self.store.all_live(parsed.obj.name), self.store.live)
            if parsed.count_only:
                return Response.json(200, {"totalSize": len(rows), "done": True, "records": []})
            shaped = [
                soql.shape(parsed, r, self.store.live, lambda o, i: self.url(req.api_version, o, i)) for r in rows
            ]
        return self._page(req, parsed, shaped, 0)

    def _page(self, req: Request, parsed: soql.Query, shaped: list[dict[str, Any]], start: int) -> Response:
        batch = shaped[start : start + self.query_batch_size]
        req.record_count = len(batch)
        body: dict[str, Any] = {"totalSize": len(shaped), "done": True, "records": batch}
        end = start + len(batch)
        if end < len(shaped):
            locator = f"01g5g00000{secrets.token_hex(4)}-{end}"
            with self._cursor_lock:
                self._cursors[locator] = (parsed, shaped, end)
            body["done"] = False
            body["nextRecordsUrl"] = f"/services/data/v{req.api_version}/query/{locator}"
        return Response.json(200, body)

    def query_more(self, req: Request, locator: str) -> Response:
        with self._cursor_lock:
            cursor = self._cursors.pop(locator, None)
        if cursor is None:
            raise RequestError(400, SFError("INVALID_QUERY_LOCATOR", "invalid query locator"))
        parsed, shaped, start = cursor
        req.object_name = parsed.obj.name
        return self._page(req, parsed, shaped, start)

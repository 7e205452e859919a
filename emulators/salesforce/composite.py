"""``POST /composite``: several REST calls in one, run in order, each answered on its own.

What the engine needs and Salesforce documents: up to 25 subrequests, at most 5 of them sObject
Collections or queries; each names its resource by URL (sobjects, sObject Collections, query), its
method and a ``referenceId``; later subrequests may use an earlier answer with ``@{ref.path}``
(``@{newAccount.id}``, ``@{found.records[0].Id}``, ``@{made[0].id}``). The call answers 200 with one
``{body, httpHeaders, httpStatusCode, referenceId}`` per subrequest. With ``allOrNone`` false each
subrequest stands alone (a subrequest whose reference cannot be resolved is not run:
``PROCESSING_HALTED``); with true, one failure rolls every write back and the others answer
``PROCESSING_HALTED``. The emulator always runs subrequests in the order sent, as Salesforce does with
``collateSubrequests`` false (the engine sends that: its writes depend on one another).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import RequestError, SFError
from .messages import Request, Response

if TYPE_CHECKING:
    from .rest import RestAPI

MAX_SUBREQUESTS = 25
MAX_COLLECTIONS_OR_QUERIES = 5
REFERENCE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REFERENCE = re.compile(r"@\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)\}")
STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
HEAVY_KINDS = {"collection_create", "collection_update", "collection_upsert", "collection_delete", "query"}
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."


class _Halted(Exception):
    """allOrNone: a subrequest failed, so every write of the call is rolled back."""


class _Unresolved(Exception):
    pass


def _invalid(message: str) -> RequestError:
    return RequestError(400, SFError("INVALID_INPUT", message))


@dataclass
class _Sub:
    """One subrequest as sent: its reference, route, version, path, query string, method and body."""

    ref: str
    route: Any
    version: str
    path: str
    query_string: str
    method: str
    body: Any


def run(rest: RestAPI, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
        raise RequestError(400, SFError("JSON_PARSER_ERROR", "The request body must contain a compositeRequest array"))
    subrequests = body["compositeRequest"]
    if not subrequests or len(subrequests) > MAX_SUBREQUESTS:
        raise _invalid(f"A composite request takes 1 to {MAX_SUBREQUESTS} subrequests, not {len(subrequests)}")
    all_or_none = bool(body.get("allOrNone", False))
    planned = [_plan(rest, index, sub) for index, sub in enumerate(subrequests)]
    if len({sub.ref for sub in planned}) != len(planned):
        raise _invalid("Duplicate referenceId in compositeRequest: each subrequest needs its own")
    heavy = sum(sub.route.kind in HEAVY_KINDS for sub in planned)
    if heavy > MAX_COLLECTIONS_OR_QUERIES:
        raise _invalid(
            f"A composite request takes at most {MAX_COLLECTIONS_OR_QUERIES} sObject Collections or query "
            f"subrequests, not {heavy}"
        )
    answers: dict[str, tuple[int, Any]] = {}
    results: list[dict[str, Any]] = []
    ran: list[Request] = []
    try:
        with rest.store.atomic():  # holds the store's lock: the subrequests run as one call
            for sub in planned:
                sent, status, data, headers = _run_one(rest, req, sub, answers, all_or_none)
                ran.append(sent)
                answers[sub.ref] = (status, data)
                results.append({"body": data, "httpHeaders": headers, "httpStatusCode": status, "referenceId": sub.ref})
                if all_or_none and _failed(status, data):
                    raise _Halted
    except _Halted:
        failed_ref = results[-1]["referenceId"]
        results += [{"referenceId": sub.ref} for sub in planned[len(results) :]]
        for result in results:
            if result["referenceId"] != failed_ref:
                halted = [SFError("PROCESSING_HALTED", ROLLED_BACK).rest_body()]
                result.update(body=halted, httpHeaders={}, httpStatusCode=400)
    req.record_count = sum(sent.record_count for sent in ran)
    names = {sent.object_name for sent in ran}
    req.object_name = names.pop() if len(names) == 1 else None  # one type throughout, else mixed
    return Response.json(200, {"compositeResponse": results})


def _plan(rest: RestAPI, index: int, sub: Any) -> _Sub:
    if not isinstance(sub, dict):
        raise _invalid(f"compositeRequest[{index}] must be an object")
    ref, method, url = sub.get("referenceId"), sub.get("method"), sub.get("url")
    if not isinstance(ref, str) or not REFERENCE_ID.match(ref):
        raise _invalid(f"compositeRequest[{index}].referenceId must be letters, digits and underscores: {ref!r}")
    if not isinstance(method, str) or method.upper() not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        raise _invalid(f"compositeRequest[{index}].method is not an HTTP method: {method!r}")
    if not isinstance(url, str):
        raise _invalid(f"compositeRequest[{index}].url is required")
    split = urlsplit(url)
    parts = split.path.split("/")
    if len(parts) < 5 or parts[1:3] != ["services", "data"] or not parts[3].startswith("v"):
        raise _invalid(f"compositeRequest[{index}].url must start with /services/data/vXX.X/: {url}")
    if parts[4] == "composite" and (len(parts) < 6 or parts[5] != "sobjects"):
        raise _invalid(f"compositeRequest[{index}]: {url} cannot be a composite subrequest")
    version = parts[3][1:]
    route = rest.route(method.upper(), version, parts[4:])
    return _Sub(ref, route, version, split.path, split.query, method.upper(), sub.get("body"))


def _run_one(
    rest: RestAPI, parent: Request, sub: _Sub, answers: dict[str, tuple[int, Any]], all_or_none: bool
) -> tuple[Request, int, Any, dict[str, str]]:
    """Run one subrequest as its own REST call; returns it (its record count, its object) and its answer."""
    route, path = sub.route, sub.path
    try:
        resolved, query_string = _resolve(path, answers), _resolve(sub.query_string, answers)
        body = _resolve(sub.body, answers)
    except _Unresolved as missing:
        skipped = Request(sub.method, path, sub.query_string, parent.headers, api_version=sub.version)
        return skipped, 400, [SFError("PROCESSING_HALTED", str(missing)).rest_body()], {}
    if resolved != path:  # a reference in the URL (an id): route what it names
        path, route = resolved, rest.route(sub.method, sub.version, resolved.split("/")[4:])
    if all_or_none and isinstance(body, dict) and "records" in body:
        body = {**body, "allOrNone": True}  # the composite's allOrNone overrides its collections'
    sent = Request(
        sub.method,
        path,
        query_string,
        parent.headers,
        json.dumps(body).encode() if body is not None else b"",
        api_version=sub.version,
        plan=parent.plan,  # per-record faults reach the records of each subrequest
    )
    try:
        response = route.handler(sent)
    except RequestError as err:
        response = Response.error(err)
    except SFError as err:
        response = Response.error(RequestError.of(err))
    sent.object_name = sent.object_name or route.object_name
    headers = {name: value for name, value in response.headers.items() if name.lower() == "location"}
    return sent, response.status, response.data, headers


def _failed(status: int, data: Any) -> bool:
    if status >= 400:
        return True
    return isinstance(data, list) and any(isinstance(r, dict) and r.get("success") is False for r in data)


def _resolve(value: Any, answers: dict[str, tuple[int, Any]]) -> Any:
    """Replace `@{ref.path}` with the value from an earlier answer (the raw value when it is the whole string)."""
    if isinstance(value, dict):
        return {key: _resolve(item, answers) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, answers) for item in value]
    if not isinstance(value, str) or "@{" not in value:
        return value
    whole = REFERENCE.fullmatch(value)
    if whole:
        return _lookup(whole, answers)
    return REFERENCE.sub(lambda match: str(_lookup(match, answers)), value)


def _lookup(match: re.Match[str], answers: dict[str, tuple[int, Any]]) -> Any:
    ref, path = match.group(1), match.group(2)
    answer = answers.get(ref)
    if answer is None or answer[0] >= 400:
        raise _Unresolved(f"Invalid reference specified. No value for {ref}{path} found in {ref}.")
    value = answer[1]
    for name, index in STEP.findall(path):
        try:
            value = value[name] if name else value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise _Unresolved(f"Invalid reference specified. No value for {ref}{path} found in {ref}.") from None
    return value

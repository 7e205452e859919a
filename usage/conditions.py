"""Condition trees: cohorts, stages (and later triggers) as data, checked on save and explained when run.

A tree is JSON:
- `{"all": [node, …]}` (true when every node is; an empty list is true), `{"any": [node, …]}` (true when
  one is; an empty list is false), `{"not": node}`;
- a metric leaf `{"metric": "active_days_7d", "op": ">=", "value": 4}` over the workspace's profile
  (`usage.metrics`); a metric with no value (None) satisfies no comparison;
- a field leaf `{"field": "status", "op": "in", "value": ["trial", "paid"]}` over its lifecycle record;
- a product leaf `{"product": "api"}`: the product was used in the last 30 days;
- a cohort leaf `{"cohort": "at_risk"}` (stages only): the workspace is in that cohort now.

`condition_errors` validates a tree and names each problem by its path (`all[1].value`), so an admin
form or a definitions file says exactly what to fix. `condition_explain` evaluates a tree and returns the
verdict with every node's value and result: what a page shows as "why".
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
TEXT_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, allowed: value in allowed,
    "not_in": lambda value, allowed: value not in allowed,
}

#: Lifecycle fields a condition may test, with their kind: "text", "number" or "flag".
FIELDS: dict[str, str] = {
    "status": "text",
    "plan": "text",
    "currency": "text",
    "billing_interval": "text",
    "acquisition_channel": "text",
    "mrr": "number",
    "needs_review": "flag",
    "at_risk": "flag",
}
GROUPS = ("all", "any", "not")
LEAVES = ("metric", "field", "product", "cohort")
MAX_DEPTH = 12


@dataclass(frozen=True)
class Facts:
    """What a condition can see of one workspace: metric values, lifecycle fields, cohorts it is in."""

    metrics: Mapping[str, Any]
    fields: Mapping[str, Any] = field(default_factory=dict)
    cohorts: frozenset[str] = frozenset()


def metric_names() -> dict[str, str]:
    """Every metric a condition may name, with its unit (the registry is read at call time)."""
    from usage.metrics import METRICS

    return {name: metric.unit for name, metric in METRICS.items()}


def products() -> tuple[str, ...]:
    from usage.metrics import PRODUCTS

    return PRODUCTS


def product_metric(product: str) -> str:
    """The metric a product leaf reads: that product's feature depth over 30 days (0: not used)."""
    from usage.metrics_sql import depth_alias

    return depth_alias(product)


# --- validation -----------------------------------------------------------------------------------------


def condition_errors(
    tree: Any, *, cohorts: bool = False, known_cohorts: frozenset[str] | None = None
) -> dict[str, list[str]]:
    """Problems of a tree by path ("" for the root); empty when it is valid.

    `cohorts`: cohort leaves are allowed (stages may use cohorts; cohorts may not, so none depends on
    another's order); `known_cohorts`: the keys they may name, when known.
    """
    errors: dict[str, list[str]] = {}
    _check(tree, "", errors, depth=0, cohorts=cohorts, known_cohorts=known_cohorts, units=metric_names())
    return errors


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    errors.setdefault(path or "condition", []).append(message)


def _check(
    node: Any,
    path: str,
    errors: dict[str, list[str]],
    *,
    depth: int,
    cohorts: bool,
    known_cohorts: frozenset[str] | None,
    units: dict[str, str],
) -> None:
    if depth > MAX_DEPTH:
        _add(errors, path, f"Nested deeper than {MAX_DEPTH} levels; flatten it with all/any.")
        return
    if not isinstance(node, dict):
        _add(errors, path, 'Expected an object such as {"all": […]} or {"metric": …, "op": …, "value": …}.')
        return
    kinds = [key for key in (*GROUPS, *LEAVES) if key in node]
    if len(kinds) != 1:
        named = ", ".join(kinds) if kinds else "none"
        _add(errors, path, f"Expected exactly one of {', '.join((*GROUPS, *LEAVES))}; found {named}.")
        return
    kind = kinds[0]
    prefix = f"{path}." if path else ""
    if kind in ("all", "any"):
        children = node[kind]
        if not isinstance(children, list):
            _add(errors, f"{prefix}{kind}", "Expected a list of conditions.")
            return
        for index, child in enumerate(children):
            _check(child, f"{prefix}{kind}[{index}]", errors, depth=depth + 1, cohorts=cohorts,
                   known_cohorts=known_cohorts, units=units)  # fmt: skip
        _unexpected(node, {kind}, path, errors)
    elif kind == "not":
        _check(node["not"], f"{prefix}not", errors, depth=depth + 1, cohorts=cohorts,
               known_cohorts=known_cohorts, units=units)  # fmt: skip
        _unexpected(node, {"not"}, path, errors)
    elif kind == "metric":
        _check_metric(node, prefix, errors, units)
    elif kind == "field":
        _check_field(node, prefix, errors)
    elif kind == "product":
        if node["product"] not in products():
            _add(errors, f"{prefix}product", f"Unknown product {node['product']!r}; known: {', '.join(products())}.")
        _unexpected(node, {"product"}, path, errors)
    else:
        if not cohorts:
            _add(errors, f"{prefix}cohort", "Cohort conditions are for stages and triggers, not for other cohorts.")
        elif known_cohorts is not None and node["cohort"] not in known_cohorts:
            _add(errors, f"{prefix}cohort", f"Unknown cohort {node['cohort']!r}.")
        _unexpected(node, {"cohort"}, path, errors)


def _unexpected(node: dict, allowed: set[str], path: str, errors: dict[str, list[str]]) -> None:
    extra = sorted(set(node) - allowed)
    if extra:
        _add(errors, path, f"Unexpected key(s): {', '.join(extra)}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and value == value  # not NaN


def _check_metric(node: dict, prefix: str, errors: dict[str, list[str]], units: dict[str, str]) -> None:
    name = node["metric"]
    if name not in units:
        _add(errors, f"{prefix}metric", f"Unknown metric {name!r}; the metrics are listed in docs/metrics.md.")
    if node.get("op") not in NUMERIC_OPS:
        _add(errors, f"{prefix}op", f"Expected one of {', '.join(NUMERIC_OPS)}.")
    if not _is_number(node.get("value")):
        _add(errors, f"{prefix}value", "Expected a number.")
    _unexpected(node, {"metric", "op", "value"}, prefix.rstrip("."), errors)


def _check_field(node: dict, prefix: str, errors: dict[str, list[str]]) -> None:
    name, op, value = node["field"], node.get("op"), node.get("value")
    kind = FIELDS.get(name)
    if kind is None:
        _add(errors, f"{prefix}field", f"Unknown field {name!r}; known: {', '.join(FIELDS)}.")
    elif kind == "number":
        if op not in NUMERIC_OPS:
            _add(errors, f"{prefix}op", f"Expected one of {', '.join(NUMERIC_OPS)}.")
        if not _is_number(value):
            _add(errors, f"{prefix}value", "Expected a number.")
    elif kind == "flag":
        if op not in ("==", "!="):
            _add(errors, f"{prefix}op", "Expected == or !=.")
        if not isinstance(value, bool):
            _add(errors, f"{prefix}value", "Expected true or false.")
    else:
        if op not in TEXT_OPS:
            _add(errors, f"{prefix}op", f"Expected one of {', '.join(TEXT_OPS)}.")
        elif op in ("in", "not_in"):
            if not (isinstance(value, list) and value and all(isinstance(item, str) for item in value)):
                _add(errors, f"{prefix}value", "Expected a non-empty list of strings.")
        elif not isinstance(value, str):
            _add(errors, f"{prefix}value", "Expected a string.")
    _unexpected(node, {"field", "op", "value"}, prefix.rstrip("."), errors)


def condition_nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every node of a tree, groups and leaves (anything that is not an object is skipped)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node
        for group in ("all", "any"):
            stack.extend(node.get(group) or [])
        if "not" in node:
            stack.append(node["not"])


def condition_references(tree: Any) -> dict[str, set[str]]:
    """The metrics, fields, products and cohorts a (valid) tree names: what a change to them can affect."""
    found: dict[str, set[str]] = {kind: set() for kind in LEAVES}
    for node in condition_nodes(tree):
        for kind in LEAVES:
            if kind in node:
                found[kind].add(node[kind])
    return found


# --- evaluation -------------------------------------------------------------------------------------------


def condition_holds(tree: dict, facts: Facts) -> bool:
    """The verdict alone (no explanation built): the fast path for a bulk pass."""
    if "all" in tree:
        return all(condition_holds(node, facts) for node in tree["all"])
    if "any" in tree:
        return any(condition_holds(node, facts) for node in tree["any"])
    if "not" in tree:
        return not condition_holds(tree["not"], facts)
    return _leaf(tree, facts)[0]


def condition_explain(tree: dict, facts: Facts) -> dict[str, Any]:
    """The verdict with each node's value and result: {"result": bool, …} mirroring the tree."""
    for group in ("all", "any"):
        if group in tree:
            children = [condition_explain(node, facts) for node in tree[group]]
            outcome = all if group == "all" else any
            return {group: children, "result": outcome(child["result"] for child in children)}
    if "not" in tree:
        inner = condition_explain(tree["not"], facts)
        return {"not": inner, "result": not inner["result"]}
    result, value = _leaf(tree, facts)
    return {**tree, "actual": value, "result": result}


def _leaf(node: dict, facts: Facts) -> tuple[bool, Any]:
    """(result, the value it was decided on) for one leaf."""
    if "metric" in node:
        value = facts.metrics.get(node["metric"])
        return _compare(NUMERIC_OPS[node["op"]], value, node["value"]), value
    if "product" in node:
        value = facts.metrics.get(product_metric(node["product"]))
        return bool(value), value
    if "cohort" in node:
        return node["cohort"] in facts.cohorts, sorted(facts.cohorts)
    value = facts.fields.get(node["field"])
    kind = FIELDS[node["field"]]
    compare = (NUMERIC_OPS if kind == "number" else TEXT_OPS)[node["op"]]
    return _compare(compare, value, node["value"]), _plain(value)


def _compare(compare: Callable[[Any, Any], bool], value: Any, threshold: Any) -> bool:
    if value is None:
        return False  # no value satisfies no comparison (a missing trend is not a decline)
    if type(value) in PLAIN_NUMBERS and type(threshold) in PLAIN_NUMBERS:
        # Python compares ints and floats exactly, and a float's shortest decimal (what Decimal(str()) reads)
        # orders as the float itself: the same verdict as below, without two Decimals per comparison.
        return compare(value, threshold)
    if _is_number(value) and _is_number(threshold):
        return compare(Decimal(str(value)), Decimal(str(threshold)))
    return compare(value, threshold)


PLAIN_NUMBERS = (int, float)  # exactly these types: not bool, not Decimal (money compares as decimals)


def _plain(value: Any) -> Any:
    """A JSON-ready value for the explanation (money as its decimal string)."""
    return str(value) if isinstance(value, Decimal) else value

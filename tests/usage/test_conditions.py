"""Condition trees: every problem named by its path; verdicts explained with the values they saw."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usage.conditions import Facts, condition_errors, condition_explain, condition_holds, condition_references


def test_a_valid_tree_has_no_errors():
    tree = {
        "all": [
            {"metric": "active_days_7d", "op": ">=", "value": 4},
            {"any": [{"field": "status", "op": "in", "value": ["trial", "paid"]}, {"product": "api"}]},
            {"not": {"field": "needs_review", "op": "==", "value": True}},
            {"field": "mrr", "op": ">", "value": 100},
        ]
    }
    assert condition_errors(tree) == {}


@pytest.mark.parametrize(
    ("tree", "path", "fragment"),
    [
        ({"metric": "no_such_metric", "op": ">=", "value": 1}, "metric", "Unknown metric"),
        ({"metric": "active_days_7d", "op": "=>", "value": 1}, "op", "Expected one of"),
        ({"metric": "active_days_7d", "op": ">=", "value": "4"}, "value", "Expected a number"),
        ({"metric": "active_days_7d", "op": ">=", "value": True}, "value", "Expected a number"),
        (
            {
                "all": [
                    {"metric": "active_days_7d", "op": ">=", "value": 1},
                    {"field": "colour", "op": "==", "value": "x"},
                ]
            },
            "all[1].field",
            "Unknown field",
        ),
        ({"any": [{"field": "status", "op": "in", "value": []}]}, "any[0].value", "non-empty list"),
        ({"not": {"field": "at_risk", "op": ">", "value": True}}, "not.op", "Expected == or !="),
        ({"field": "mrr", "op": ">=", "value": "lots"}, "value", "Expected a number"),
        ({"product": "fax"}, "product", "Unknown product"),
        ({"cohort": "at_risk"}, "cohort", "not for other cohorts"),
        ({"all": {"metric": "active_days_7d"}}, "all", "Expected a list"),
        ({"all": [], "any": []}, "condition", "exactly one of"),
        ({"metric": "active_days_7d", "op": ">=", "value": 1, "colour": 1}, "condition", "Unexpected key(s): colour"),
        ([1, 2], "condition", "Expected an object"),
    ],
)
def test_each_problem_is_named_by_its_path(tree, path, fragment):
    errors = condition_errors(tree)
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors


def test_nesting_is_bounded():
    tree: dict = {"metric": "active_days_7d", "op": ">=", "value": 1}
    for _ in range(20):
        tree = {"not": tree}
    assert any("deeper than" in message for messages in condition_errors(tree).values() for message in messages)


def test_stages_may_name_cohorts_that_exist():
    assert condition_errors({"cohort": "at_risk"}, cohorts=True, known_cohorts=frozenset({"at_risk"})) == {}
    errors = condition_errors({"cohort": "gone"}, cohorts=True, known_cohorts=frozenset({"at_risk"}))
    assert errors == {"cohort": ["Unknown cohort 'gone'."]}


FACTS = Facts(
    metrics={"active_days_7d": 5, "duration_trend_14d": None, "depth_api_30d": 3, "depth_sdk_30d": 0},
    fields={"status": "paid", "mrr": Decimal("297.00"), "at_risk": False},
    cohorts=frozenset({"at_risk"}),
)


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"metric": "active_days_7d", "op": ">=", "value": 5}, True),
        ({"metric": "active_days_7d", "op": ">", "value": 5}, False),
        ({"metric": "duration_trend_14d", "op": "<=", "value": -0.3}, False),  # no value: not a decline
        ({"not": {"metric": "duration_trend_14d", "op": "<=", "value": -0.3}}, True),
        ({"field": "mrr", "op": ">", "value": 296.99}, True),
        ({"field": "status", "op": "not_in", "value": ["trial", "churned"]}, True),
        ({"product": "api"}, True),
        ({"product": "sdk"}, False),
        ({"cohort": "at_risk"}, True),
        ({"all": []}, True),
        ({"any": []}, False),
    ],
)
def test_verdicts(tree, expected):
    assert condition_holds(tree, FACTS) is expected
    assert condition_explain(tree, FACTS)["result"] is expected


def test_the_explanation_carries_each_value_and_verdict():
    tree = {"all": [{"metric": "active_days_7d", "op": ">=", "value": 4}, {"field": "mrr", "op": ">=", "value": 300}]}

    explained = condition_explain(tree, FACTS)

    assert explained == {
        "all": [
            {"metric": "active_days_7d", "op": ">=", "value": 4, "actual": 5, "result": True},
            {"field": "mrr", "op": ">=", "value": 300, "actual": "297.00", "result": False},
        ],
        "result": False,
    }


def test_references():
    tree = {"all": [{"metric": "a", "op": ">", "value": 1}, {"not": {"cohort": "c"}}, {"any": [{"product": "api"}]}]}
    assert condition_references(tree) == {"metric": {"a"}, "field": set(), "product": {"api"}, "cohort": {"c"}}

"""Composite: subrequests in order, each answered on its own; references; allOrNone rollback; limits."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest

from emulators.salesforce import Emulator

V = "/services/data/v59.0"
QUERY = V + "/query?q=SELECT+Id+FROM+Lead"


def composite(sf: Salesforce, *subrequests: dict, all_or_none: bool = False) -> list[dict]:
    body = {"allOrNone": all_or_none, "collateSubrequests": False, "compositeRequest": list(subrequests)}
    return sf.restful("composite", method="POST", json=body)["compositeResponse"]


def test_a_stamp_then_an_upsert_that_looks_it_up_by_external_id_in_one_call(emulator: Emulator, sf: Salesforce):
    """The engine's use: stamp the contact convertLead made, then upsert the workspace pointing at it."""
    contact_id = emulator.store.seed("Contact", LastName="Roe")
    answers = composite(
        sf,
        {
            "method": "PATCH",
            "url": f"{V}/composite/sobjects",
            "referenceId": "stamps",
            "body": {
                "allOrNone": False,
                "records": [{"attributes": {"type": "Contact"}, "Id": contact_id, "Lifecycle_Engine_ID__c": "con_1"}],
            },
        },
        {
            "method": "PATCH",
            "url": f"{V}/composite/sobjects/Workspace__c/Lifecycle_Engine_ID__c",
            "referenceId": "workspaces",
            "body": {
                "allOrNone": False,
                "records": [
                    {
                        "attributes": {"type": "Workspace__c"},
                        "Lifecycle_Engine_ID__c": "ws_1",
                        "Workspace_ID__c": "ws_1",
                        "Contact__r": {"Lifecycle_Engine_ID__c": "con_1"},
                    }
                ],
            },
        },
    )
    assert [(a["referenceId"], a["httpStatusCode"]) for a in answers] == [("stamps", 200), ("workspaces", 200)]
    assert answers[0]["body"] == [{"id": contact_id, "success": True, "errors": []}]
    assert answers[1]["body"][0]["success"] and answers[1]["body"][0]["created"]
    assert emulator.store.find_one("Workspace__c", Workspace_ID__c="ws_1")["Contact__c"] == contact_id
    entry = emulator.requests_log.api_calls("composite")[0]
    assert (entry.status, entry.record_count) == (200, 2)
    assert [len(records) for _, records, _ in entry.collections()] == [1, 1]
    assert entry.record_errors() == []
    assert emulator.limits.used == 1, "a composite call counts once against the API limit"


def test_subrequests_stand_alone_and_references_resolve(emulator: Emulator, sf: Salesforce):
    answers = composite(
        sf,
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acme", "body": {"Name": "Acme"}},
        {"method": "POST", "url": f"{V}/sobjects/Lead", "referenceId": "bad", "body": {"LastName": "Doe"}},
        {
            "method": "POST",
            "url": f"{V}/sobjects/Contact",
            "referenceId": "dana",
            "body": {"LastName": "Dana", "AccountId": "@{acme.id}"},
        },
        {"method": "GET", "url": f"{V}/sobjects/Account/@{{acme.id}}", "referenceId": "read"},
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "orphan", "body": {"LastName": "@{bad.id}"}},
    )
    statuses = {a["referenceId"]: a["httpStatusCode"] for a in answers}
    assert statuses == {"acme": 201, "bad": 400, "dana": 201, "read": 200, "orphan": 400}
    account_id = answers[0]["body"]["id"]
    assert emulator.store.get(answers[2]["body"]["id"])["AccountId"] == account_id
    assert answers[3]["body"]["Name"] == "Acme"
    assert answers[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert answers[4]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert "bad.id" in answers[4]["body"][0]["message"]


def test_all_or_none_rolls_every_write_back(emulator: Emulator, sf: Salesforce):
    answers = composite(
        sf,
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acme", "body": {"Name": "Acme"}},
        {
            "method": "POST",
            "url": f"{V}/composite/sobjects",
            "referenceId": "people",
            "body": {
                "allOrNone": False,  # overridden by the composite's allOrNone
                "records": [
                    {"attributes": {"type": "Contact"}, "LastName": "Roe"},
                    {"attributes": {"type": "Lead"}, "LastName": "Doe"},  # no Company
                ],
            },
        },
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "never", "body": {"Name": "Beta"}},
        all_or_none=True,
    )
    assert [a["httpStatusCode"] for a in answers] == [400, 200, 400]
    assert answers[0]["body"][0]["errorCode"] == answers[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert [r["success"] for r in answers[1]["body"]] == [False, False]
    errors = emulator.requests_log.api_calls("composite")[0].record_errors()
    assert errors == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING"]
    assert emulator.store.count("Account") == emulator.store.count("Contact") == 0


def test_per_record_faults_reach_the_records_of_each_collection(emulator: Emulator, sf: Salesforce):
    emulator.faults.unable_to_lock_row(records=[0], kind="composite")
    collection = {"allOrNone": False, "records": [{"attributes": {"type": "Account"}, "Name": n} for n in "AB"]}
    answers = composite(
        sf,
        {"method": "POST", "url": f"{V}/composite/sobjects", "referenceId": "one", "body": collection},
        {"method": "POST", "url": f"{V}/composite/sobjects", "referenceId": "two", "body": collection},
    )
    for answer in answers:
        assert [r["success"] for r in answer["body"]] == [False, True]
        assert answer["body"][0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"


@pytest.mark.parametrize(
    ("subrequests", "message"),
    [
        ([], "1 to 25 subrequests"),
        ([{"method": "GET", "url": f"{V}/limits", "referenceId": f"r{n}"} for n in range(26)], "1 to 25"),
        (
            [{"method": "GET", "url": QUERY, "referenceId": f"q{n}"} for n in range(6)],
            "at most 5",
        ),
        ([{"method": "GET", "url": f"{V}/limits", "referenceId": "same"}] * 2, "Duplicate referenceId"),
        ([{"method": "GET", "url": f"{V}/limits", "referenceId": "1st"}], "referenceId"),
        ([{"method": "GET", "url": "/limits", "referenceId": "a"}], "/services/data/"),
        ([{"method": "POST", "url": f"{V}/composite", "referenceId": "a"}], "cannot be a composite subrequest"),
        ([{"method": "FETCH", "url": f"{V}/limits", "referenceId": "a"}], "not an HTTP method"),
    ],
)
def test_a_malformed_composite_is_refused_whole_and_changes_nothing(
    emulator: Emulator, sf: Salesforce, subrequests: list, message: str
):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        composite(sf, *subrequests)
    assert message in refused.value.content[0]["message"]
    assert emulator.requests_log.api_calls("composite")[0].status == 400


def test_a_composite_refused_whole_by_a_fault_still_logs_what_it_carried(emulator: Emulator, sf: Salesforce):
    emulator.faults.server_error(503, kind="composite")
    collection = {"allOrNone": False, "records": [{"attributes": {"type": "Account"}, "Name": "Acme"}]}
    with pytest.raises(SalesforceError):
        composite(sf, {"method": "POST", "url": f"{V}/composite/sobjects", "referenceId": "one", "body": collection})
    entry = emulator.requests_log.api_calls("composite")[0]
    assert entry.status == 503
    assert [records[0]["Name"] for _, records, _ in entry.collections()] == ["Acme"]
    assert entry.record_errors() == []
    assert emulator.store.count("Account") == 0

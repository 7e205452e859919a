"""sObject Collections: create, update, upsert (per-record results), allOrNone, the 200-record limit."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from emulators.salesforce import Emulator

pytestmark = []

UPSERT_CONTACTS = "composite/sobjects/Contact/Lifecycle_Engine_ID__c"


def contact(ext: str, **fields) -> dict:
    return {"attributes": {"type": "Contact"}, "Lifecycle_Engine_ID__c": ext, **fields}


def test_collection_create_and_update(emulator: Emulator, sf: Salesforce) -> None:
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "Acme"},
                {"attributes": {"type": "Lead"}, "LastName": "Doe"},  # no Company
                {"attributes": {"type": "Contact"}, "LastName": "Roe"},
            ],
        },
    )
    assert results[0]["success"] and results[0]["id"].startswith("001") and results[0]["errors"] == []
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
                "fields": ["Company"],
            }
        ],
    }
    assert results[2]["success"] and results[2]["id"].startswith("003")
    account_id = results[0]["id"]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "Id": account_id, "Name": "Acme Inc"},
                {"attributes": {"type": "Account"}, "Name": "no id"},
                {"attributes": {"type": "Account"}, "Id": "0015g00000ZZZZZAA5", "Name": "ghost"},
            ]
        },
    )
    assert updated[0] == {"id": account_id, "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert updated[2]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert emulator.store.get(account_id)["Name"] == "Acme Inc"
    log = emulator.requests_log
    assert [e.kind for e in log.api_calls()] == ["collection_create", "collection_update"]
    assert log.records_sent("collection_create") == 3


def test_collection_upsert_mixed_results(emulator: Emulator, sf: Salesforce) -> None:
    sf.Account.create({"Name": "Acme", "Lifecycle_Engine_ID__c": "acc_1"})
    sf.Contact.create({"LastName": "Existing", "Lifecycle_Engine_ID__c": "con_1"})
    emulator.store.seed("Contact", LastName="Twin", Lifecycle_Engine_ID__c="con_twin")
    emulator.store.seed("Contact", LastName="Twin", Lifecycle_Engine_ID__c="con_twin")
    results = sf.restful(
        UPSERT_CONTACTS,
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                contact("con_1", LastName="Updated"),
                contact("con_2", LastName="New", Account={"Lifecycle_Engine_ID__c": "acc_1"}),
                contact("con_3", LastName="Orphan", Account={"Lifecycle_Engine_ID__c": "acc_missing"}),
                contact("con_4"),
                contact("con_twin", LastName="Which?"),
                contact("con_5", LastName="Same"),
                contact("con_5", LastName="Same again"),
            ],
        },
    )
    assert [r["success"] for r in results] == [True, True, False, False, False, False, False]
    assert results[0]["created"] is False and results[1]["created"] is True
    codes = [r["errors"][0]["statusCode"] for r in results[2:]]
    assert codes == [
        "INVALID_FIELD",
        "REQUIRED_FIELD_MISSING",
        "DUPLICATE_EXTERNAL_ID",
        "DUPLICATE_VALUE",
        "DUPLICATE_VALUE",
    ]
    assert "Foreign key external ID: acc_missing not found" in results[2]["errors"][0]["message"]
    assert all(r["created"] is False for r in results[2:])
    store = emulator.store
    assert store.find_one("Contact", Lifecycle_Engine_ID__c="con_1")["LastName"] == "Updated"
    new = store.find_one("Contact", Lifecycle_Engine_ID__c="con_2")
    assert new["AccountId"] == store.find_one("Account", Lifecycle_Engine_ID__c="acc_1")["Id"]
    assert store.find("Contact", Lifecycle_Engine_ID__c="con_3") == []


def test_all_or_none_rolls_everything_back(emulator: Emulator, sf: Salesforce) -> None:
    sf.Contact.create({"LastName": "Before", "Lifecycle_Engine_ID__c": "con_1"})
    results = sf.restful(
        UPSERT_CONTACTS,
        method="PATCH",
        json={
            "allOrNone": True,
            "records": [contact("con_1", LastName="After"), contact("con_2", LastName="New"), contact("con_3")],
        },
    )
    assert [r["success"] for r in results] == [False, False, False]
    assert [r["errors"][0]["statusCode"] for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert emulator.store.find_one("Contact", Lifecycle_Engine_ID__c="con_1")["LastName"] == "Before"
    assert emulator.store.count("Contact") == 1


def test_more_than_200_records_are_refused(emulator: Emulator, sf: Salesforce) -> None:
    records = [contact(f"con_{i}", LastName="X") for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful(UPSERT_CONTACTS, method="PATCH", json={"allOrNone": False, "records": records})
    assert info.value.content == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
            "fields": [],
        }
    ]
    assert emulator.store.count("Contact") == 0
    results = sf.restful(UPSERT_CONTACTS, method="PATCH", json={"allOrNone": False, "records": records[:200]})
    assert len(results) == 200 and all(r["success"] and r["created"] for r in results)


def test_collection_requests_that_cannot_be_read_fail_whole(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful(UPSERT_CONTACTS, method="PATCH", json={"records": [contact("c", LastName="X", Shoe_Size__c=9)]})
    assert info.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful(
            UPSERT_CONTACTS,
            method="PATCH",
            json={"records": [{"attributes": {"type": "Account"}, "Name": "A", "Lifecycle_Engine_ID__c": "a"}]},
        )
    assert info.value.content[0]["errorCode"] == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("composite/sobjects", method="POST", json={"records": [{"Name": "no attributes"}]})
    assert info.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_collection_delete_and_retrieve(emulator: Emulator, sf: Salesforce) -> None:
    one = sf.Account.create({"Name": "One"})["id"]
    two = sf.Account.create({"Name": "Two"})["id"]
    got = sf.restful("composite/sobjects/Account", params={"ids": f"{one},{two}", "fields": "Name"})
    assert [r["Name"] for r in got] == ["One", "Two"]
    results = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{one},0015g00000ZZZZZAA5"})
    assert results[0] == {"id": one, "success": True, "errors": []}
    assert results[1]["success"] is False
    assert emulator.store.get(one) is None and emulator.store.get(two) is not None

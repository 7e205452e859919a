"""Single-record REST: create, get, update, delete, upsert by external id, references, field rules."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from emulators.salesforce import Emulator
from emulators.salesforce.ids import checksum, normalize

pytestmark = []


def error_of(info: pytest.ExceptionInfo) -> dict:
    content = info.value.content
    assert isinstance(content, list) and len(content) == 1
    return content[0]


def test_create_get_update_delete(emulator: Emulator, sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Acme", "Website": "acme.io", "Lifecycle_Engine_ID__c": "acc_1"})
    assert created["success"] is True and created["errors"] == []
    account_id = created["id"]
    assert len(account_id) == 18 and account_id.startswith("001")
    assert account_id[15:] == checksum(account_id[:15])

    record = sf.Account.get(account_id)
    assert record["attributes"] == {"type": "Account", "url": f"/services/data/v62.0/sobjects/Account/{account_id}"}
    assert record["Name"] == "Acme" and record["Website"] == "acme.io" and record["Domain__c"] is None
    assert sf.Account.get(account_id[:15])["Id"] == account_id  # 15-character ids are accepted

    assert sf.Account.update(account_id, {"Name": "Acme Inc"}) == 204
    assert emulator.store.get(account_id)["Name"] == "Acme Inc"
    assert sf.Account.get_by_custom_id("Lifecycle_Engine_ID__c", "acc_1")["Id"] == account_id

    assert sf.Account.delete(account_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.Account.get(account_id)
    assert error_of(info)["errorCode"] == "ENTITY_IS_DELETED"
    assert emulator.store.get(account_id) is None
    kinds = [e.kind for e in emulator.requests_log.api_calls()]
    reads = ["sobject_get", "sobject_get"]
    assert kinds == ["sobject_create", *reads, "sobject_update", "sobject_get", "sobject_delete", "sobject_get"]


def test_key_prefixes(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "A"})["id"]
    assert sf.Contact.create({"LastName": "C", "AccountId": account})["id"].startswith("003")
    assert sf.Lead.create({"LastName": "L", "Company": "Co"})["id"].startswith("00Q")
    workspace = sf.Workspace__c.create({"Workspace_ID__c": "ws_1"})["id"]
    assert workspace.startswith("a00")
    assert sf.Workspace__c.get(workspace)["Name"] == workspace  # custom object Name defaults to the Id


def test_unknown_ids_answer_404_not_found(sf: Salesforce) -> None:
    for missing in ("0015g00000ZZZZZAA5", "garbage"):
        with pytest.raises(SalesforceResourceNotFound) as info:
            sf.Account.get(missing)
        assert error_of(info)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.update("0015g00000ZZZZZAA5", {"Name": "x"})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Nope__c.create({"Name": "x"})


def test_required_fields_and_field_checks(emulator: Emulator, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Lead.create({"LastName": "Doe", "Email": "doe@acme.io"})
    assert error_of(info) == {
        "message": "Required fields are missing: [Company]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["Company"],
    }
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.create({"Website": "x.io"})
    assert error_of(info)["fields"] == ["Name"]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Contact.create({"LastName": "X", "Email": "not-an-email"})
    assert error_of(info)["errorCode"] == "INVALID_EMAIL_ADDRESS"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.create({"Name": "A", "Colour__c": "red"})
    assert error_of(info)["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.create({"Workspace_ID__c": "ws_1", "Trial_Expiration_Date__c": "next week"})
    assert error_of(info)["errorCode"] == "JSON_PARSER_ERROR"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.create({"Workspace_ID__c": "ws_1", "Self_Serve_Status__c": "Trialing"})
    assert error_of(info)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Lead.create({"LastName": "L", "Company": "C", "IsConverted": True})
    assert error_of(info)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    account = sf.Account.create({"Name": "A"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.update(account, {"Name": None})
    assert error_of(info)["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.create({"Workspace_ID__c": "ws_2", "Account__c": "0035g0000000001AAA"})
    assert error_of(info)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert emulator.store.count("Lead") == 0 and emulator.store.count("Workspace__c") == 0


def test_workspace_fields_round_trip(sf: Salesforce) -> None:
    body = {
        "Workspace_ID__c": "ws_8812",
        "Name": "Acme workspace",
        "Self_Serve_Status__c": "Paid",
        "Trial_Expiration_Date__c": "2026-12-20",
        "Converted_Date__c": "2026-11-20",
        "Churn_Date__c": None,
        "Churn_Reason__c": None,
        "Plan__c": "team",
        "MRR__c": "297.00",
        "Lifecycle_Engine_ID__c": "ws_8812",
    }
    result = sf.Workspace__c.upsert("Workspace_ID__c/ws_8812", body, raw_response=True)
    assert result.status_code == 201
    record = sf.Workspace__c.get_by_custom_id("Workspace_ID__c", "ws_8812")
    assert record["MRR__c"] == 297.0 and record["Trial_Expiration_Date__c"] == "2026-12-20"
    assert record["Self_Serve_Status__c"] == "Paid"


def test_duplicate_external_id_on_create_is_duplicate_value(sf: Salesforce) -> None:
    first = sf.Account.create({"Name": "A", "Lifecycle_Engine_ID__c": "acc_1"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.create({"Name": "B", "Lifecycle_Engine_ID__c": "acc_1"})
    error = error_of(info)
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert first in error["message"]
    with pytest.raises(SalesforceMalformedRequest):
        sf.Workspace__c.create({"Workspace_ID__c": "ws_1"}) and sf.Workspace__c.create({"Workspace_ID__c": "ws_1"})


def test_upsert_creates_then_updates(emulator: Emulator, sf: Salesforce) -> None:
    created = sf.Lead.upsert(
        "Lifecycle_Engine_ID__c/lead_1",
        {"LastName": "Doe", "Company": "Acme", "Email": "doe@acme.io"},
        raw_response=True,
    )
    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": [], "created": True}
    updated = sf.Lead.upsert("Lifecycle_Engine_ID__c/lead_1", {"Status": "Working - Contacted"}, raw_response=True)
    assert updated.status_code == 200
    assert updated.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    assert emulator.store.find_one("Lead", Lifecycle_Engine_ID__c="lead_1")["Status"] == "Working - Contacted"
    assert emulator.store.count("Lead") == 1


def test_upsert_before_api_46_answers_204_on_update(emulator: Emulator, token: str) -> None:
    url = f"{emulator.instance_url}/services/data/v45.0/sobjects/Account/Lifecycle_Engine_ID__c/acc_9"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.patch(url, json={"Name": "A"}, headers=headers, timeout=5).status_code == 201
    again = requests.patch(url, json={"Name": "B"}, headers=headers, timeout=5)
    assert again.status_code == 204 and again.content == b""


def test_upsert_with_several_matches_answers_300(emulator: Emulator, sf: Salesforce) -> None:
    one = emulator.store.seed("Account", Name="A", Lifecycle_Engine_ID__c="acc_dup")
    two = emulator.store.seed("Account", Name="B", Lifecycle_Engine_ID__c="acc_dup")
    with pytest.raises(SalesforceMoreThanOneRecord) as info:
        sf.Account.upsert("Lifecycle_Engine_ID__c/acc_dup", {"Name": "C"})
    assert info.value.status == 300
    assert sorted(info.value.content) == sorted(f"/services/data/v62.0/sobjects/Account/{rid}" for rid in (one, two))
    assert {r["Name"] for r in emulator.store.records("Account")} == {"A", "B"}


def test_upsert_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as info:
        sf.Account.upsert("No_Such_Field__c/x", {"Name": "A"})
    assert error_of(info)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.upsert("Name/x", {"Name": "A"})
    assert error_of(info)["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Account.upsert("Lifecycle_Engine_ID__c/acc_1", {"Website": "x.io"})
    assert error_of(info)["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_relationship_references_by_external_id(emulator: Emulator, sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Acme", "Lifecycle_Engine_ID__c": "acc_1"})["id"]
    lead = sf.Lead.create({"LastName": "Doe", "Company": "Acme", "Lifecycle_Engine_ID__c": "lead_1"})["id"]
    contact = sf.Contact.upsert(
        "Lifecycle_Engine_ID__c/con_1",
        {"LastName": "Doe", "Account": {"Lifecycle_Engine_ID__c": "acc_1"}},
        raw_response=True,
    ).json()["id"]
    assert emulator.store.get(contact)["AccountId"] == account
    sf.Workspace__c.upsert(
        "Workspace_ID__c/ws_1",
        {
            "Account__r": {"Lifecycle_Engine_ID__c": "acc_1"},
            "Lead__r": {"attributes": {"type": "Lead"}, "Lifecycle_Engine_ID__c": "lead_1"},
            "Contact__r": {"Lifecycle_Engine_ID__c": "con_1"},
        },
    )
    ws = emulator.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    assert (ws["Account__c"], ws["Lead__c"], ws["Contact__c"]) == (account, lead, contact)

    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.upsert("Workspace_ID__c/ws_2", {"Account__r": {"Lifecycle_Engine_ID__c": "acc_404"}})
    assert error_of(info) == {
        "message": "Foreign key external ID: acc_404 not found for field Lifecycle_Engine_ID__c in entity Account",
        "errorCode": "INVALID_FIELD",
        "fields": [],
    }
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.upsert("Workspace_ID__c/ws_2", {"Account__r": {"Name": "Acme"}})
    assert error_of(info)["errorCode"] == "INVALID_FIELD"


def test_validation_rules(emulator: Emulator, sf: Salesforce) -> None:
    rule = emulator.store.add_validation_rule(
        "Workspace__c",
        lambda ws: ws["Self_Serve_Status__c"] == "Churned" and not ws["Churn_Date__c"],
        "Churn Date is required when a workspace churns",
        fields=["Churn_Date__c"],
    )
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Workspace__c.upsert("Workspace_ID__c/ws_1", {"Self_Serve_Status__c": "Churned"})
    assert error_of(info) == {
        "message": "Churn Date is required when a workspace churns",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "fields": ["Churn_Date__c"],
    }
    sf.Workspace__c.upsert("Workspace_ID__c/ws_1", {"Self_Serve_Status__c": "Churned", "Churn_Date__c": "2026-11-01"})
    emulator.store.remove_validation_rule(rule)
    emulator.store.add_validation_rule(
        "Workspace__c", lambda new, old: old is not None and new["Plan__c"] != old["Plan__c"], "Plan is locked"
    )
    with pytest.raises(SalesforceMalformedRequest):
        sf.Workspace__c.upsert("Workspace_ID__c/ws_1", {"Plan__c": "team"})


def test_converted_leads_cannot_be_updated(emulator: Emulator, sf: Salesforce) -> None:
    lead = sf.Lead.create({"LastName": "Doe", "Company": "Acme", "Lifecycle_Engine_ID__c": "lead_1"})["id"]
    emulator.store.convert_lead(lead, converted_status="Closed - Converted", do_not_create_opportunity=True)
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Lead.upsert("Lifecycle_Engine_ID__c/lead_1", {"Company": "Acme 2"})
    assert error_of(info)["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_id_helpers() -> None:
    assert normalize("001000000000001") == "001000000000001AAA"
    assert normalize("0015g0000000001AAA") == "0015g0000000001AAA"
    assert normalize("0015g0000000001ZZZ") is None
    assert normalize("short") is None
    assert checksum("001Dn00000AbCdE") == checksum("001Dn00000AbCdE")


def test_text_lengths_are_enforced(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.Lead.create({"LastName": "x" * 81, "Company": "C"})
    assert error_of(info)["errorCode"] == "STRING_TOO_LONG"
    assert error_of(info)["fields"] == ["LastName"]
    assert sf.Lead.create({"LastName": "x" * 80, "Company": "C"})["success"]


def test_deleting_an_account_takes_its_contacts_and_clears_custom_lookups(emulator: Emulator) -> None:
    # given an account, its contact, and a workspace looking both up
    store = emulator.store
    account = store.create("Account", {"Name": "Acme"})
    contact = store.create("Contact", {"LastName": "Dana", "AccountId": account})
    other = store.create("Contact", {"LastName": "Lee"})
    workspace = store.create("Workspace__c", {"Account__c": account, "Contact__c": other})
    # when the account is deleted
    store.delete("Account", account)
    # then its contact went with it, the other did not, and the workspace no longer points at the account
    assert store.get(contact) is None
    assert store.get(other) is not None
    assert (store.get(workspace)["Account__c"], store.get(workspace)["Contact__c"]) == (None, other)
    # when the other contact is deleted, the workspace's lookup to it is cleared too
    store.delete("Contact", other)
    assert store.get(workspace)["Contact__c"] is None

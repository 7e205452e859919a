"""The SOQL subset, query pagination, /limits/ and the Sforce-Limit-Info header, limit exhaustion."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceRefusedRequest

from emulators.salesforce import Emulator

from .conftest import make_client

pytestmark = []


@pytest.fixture
def seeded(sf: Salesforce) -> Salesforce:
    acme = sf.Account.create({"Name": "Acme", "Domain__c": "acme.io", "Lifecycle_Engine_ID__c": "acc_1"})["id"]
    sf.Contact.create({"LastName": "Doe", "Email": "doe@acme.io", "AccountId": acme, "Lifecycle_Engine_ID__c": "c1"})
    sf.Contact.create({"LastName": "Roe", "Email": "ROE@acme.io", "Lifecycle_Engine_ID__c": "c2"})
    sf.Contact.create({"LastName": "Poe", "Email": "poe@other.io", "Lifecycle_Engine_ID__c": "c3"})
    return sf


def test_select_in_and_relationship_fields(seeded: Salesforce) -> None:
    result = seeded.query(
        "SELECT Id, LastName, Email, Account.Name, Account.Lifecycle_Engine_ID__c FROM Contact "
        "WHERE Lifecycle_Engine_ID__c IN ('c1', 'c2') ORDER BY LastName"
    )
    assert result["totalSize"] == 2 and result["done"] is True
    first, second = result["records"]
    assert first["attributes"] == {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{first['Id']}"}
    assert first["LastName"] == "Doe"
    assert first["Account"]["Name"] == "Acme" and first["Account"]["Lifecycle_Engine_ID__c"] == "acc_1"
    assert first["Account"]["attributes"]["type"] == "Account"
    assert second["LastName"] == "Roe" and second["Account"] is None
    assert set(first) == {"attributes", "Id", "LastName", "Email", "Account"}


def test_where_equals_and_limit(seeded: Salesforce) -> None:
    # String comparison is case-insensitive, as in Salesforce.
    assert seeded.query("SELECT Id FROM Contact WHERE Email = 'roe@acme.io'")["totalSize"] == 1
    both = seeded.query("SELECT Id FROM Contact WHERE Email LIKE '%@acme.io' AND LastName != 'Doe'")
    assert both["totalSize"] == 1
    assert (
        seeded.query("SELECT Id FROM Contact WHERE Email = 'x' OR (LastName = 'Poe' AND Email != null)")["totalSize"]
        == 1
    )
    assert len(seeded.query("SELECT Id FROM Contact LIMIT 2")["records"]) == 2
    assert seeded.query("SELECT COUNT() FROM Contact WHERE AccountId = null")["totalSize"] == 2
    assert seeded.query("SELECT Id FROM Contact WHERE Account.Domain__c = 'acme.io'")["totalSize"] == 1
    assert seeded.query("SELECT Id FROM Contact WHERE LastName NOT IN ('Doe', 'Roe')")["totalSize"] == 1


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELEC Id FROM Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Shoe_Size__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Nothing__c", "INVALID_TYPE"),
    ],
)
def test_bad_queries_answer_400(sf: Salesforce, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(soql)
    assert info.value.status == 400
    assert info.value.content[0]["errorCode"] == code


def test_query_all_follows_next_records_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(query_batch_size=3) as emu:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle_path)
        for i in range(7):
            emu.store.seed("Account", Name=f"A{i}")
        sf = make_client(emu, emu.issue_token())
        first = sf.query("SELECT Name FROM Account")
        assert first["done"] is False and len(first["records"]) == 3 and first["totalSize"] == 7
        assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/")
        everything = sf.query_all("SELECT Name FROM Account ORDER BY Name")
        assert [r["Name"] for r in everything["records"]] == [f"A{i}" for i in range(7)]


def test_limits_and_usage_header(emulator: Emulator, sf: Salesforce) -> None:
    emulator.set_api_limit(1000, used=10)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 1000, "Remaining": 989}
    assert sf.api_usage["api-usage"].used == 11 and sf.api_usage["api-usage"].total == 1000
    accounts = sf.Account
    assert accounts.create({"Name": "A"})["success"]
    assert accounts.api_usage["api-usage"].used == 12  # SFType keeps its own parsed header
    failed = requests.get(
        f"{emulator.instance_url}/services/data/v62.0/sobjects/Account/0015g00000ZZZZZAA5",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        timeout=5,
    )
    assert failed.status_code == 404 and failed.headers["Sforce-Limit-Info"] == "api-usage=13/1000"


def test_exhausted_daily_limit_answers_403(emulator: Emulator, sf: Salesforce) -> None:
    emulator.set_api_limit(3)
    sf.limits()
    sf.limits()
    sf.limits()
    with pytest.raises(SalesforceRefusedRequest) as info:
        sf.Account.create({"Name": "A"})
    assert info.value.status == 403
    assert info.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED", "fields": []}
    ]
    assert emulator.store.count("Account") == 0
    emulator.set_api_limit(used=0)
    assert sf.Account.create({"Name": "A"})["success"]

"""The record links the rep pages show (…/lightning/r/<Object>/<Id>/view) open a plain page in the emulator."""

from __future__ import annotations

import requests
from simple_salesforce import Salesforce

from emulators.salesforce import Emulator


def test_a_record_link_opens_its_fields_with_lookups_linked(emulator: Emulator, sf: Salesforce):
    account = sf.Account.create({"Name": "Acme <Labs>", "Lifecycle_Engine_ID__c": "acc_1"})["id"]
    contact = sf.Contact.create({"LastName": "Reyes", "AccountId": account, "Lifecycle_Engine_ID__c": "con_1"})["id"]

    page = requests.get(f"{emulator.instance_url}/lightning/r/Contact/{contact}/view", timeout=5)

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<h1>Contact: Reyes</h1>" in page.text
    assert f'<a href="/lightning/r/Account/{account}/view">{account}</a>' in page.text
    account_page = requests.get(f"{emulator.instance_url}/lightning/r/Account/{account}/view", timeout=5)
    assert "Acme &lt;Labs&gt;" in account_page.text and "<Labs>" not in account_page.text


def test_an_unknown_or_mistyped_record_is_a_404_page(emulator: Emulator, sf: Salesforce):
    account = sf.Account.create({"Name": "Acme", "Lifecycle_Engine_ID__c": "acc_1"})["id"]
    assert requests.get(f"{emulator.instance_url}/lightning/r/Lead/{account}/view", timeout=5).status_code == 404
    missing = requests.get(f"{emulator.instance_url}/lightning/r/Account/001000000000000AAA/view", timeout=5)
    assert missing.status_code == 404 and "No such record" in missing.text


def test_the_api_still_needs_its_session(emulator: Emulator):
    answer = requests.get(f"{emulator.instance_url}/services/data/v62.0/sobjects/Account/001000000000000AAA", timeout=5)
    assert answer.status_code == 401

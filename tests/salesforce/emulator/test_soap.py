"""SOAP partner API convertLead."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import requests
from simple_salesforce import Salesforce

from emulators.salesforce import Emulator

from .conftest import SOAP_ENVELOPE, lead_convert, soap_convert

pytestmark = []
NS = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "p": "urn:partner.soap.sforce.com"}
NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def results_of(response: requests.Response) -> list[ET.Element]:
    root = ET.fromstring(response.content)  # noqa: S314 - the emulator's own answer
    return root.findall("soapenv:Body/p:convertLeadResponse/p:result", NS)


def field(result: ET.Element, name: str) -> str | None:
    elem = result.find(f"p:{name}", NS)
    assert elem is not None, name
    return None if elem.get(NIL) == "true" else elem.text


def test_convert_lead_creates_account_and_contact_once(emulator: Emulator, sf: Salesforce, token: str) -> None:
    lead = sf.Lead.create(
        {"FirstName": "Dana", "LastName": "Doe", "Company": "Acme", "Email": "dana@acme.io", "LeadSource": "Web"}
    )["id"]
    response = soap_convert(emulator, token, lead_convert(lead))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    (result,) = results_of(response)
    assert field(result, "success") == "true"
    assert field(result, "leadId") == lead
    assert field(result, "opportunityId") is None
    account_id, contact_id = field(result, "accountId"), field(result, "contactId")
    store = emulator.store
    assert store.get(account_id)["Name"] == "Acme"
    contact = store.get(contact_id)
    assert (contact["FirstName"], contact["LastName"], contact["Email"], contact["AccountId"]) == (
        "Dana",
        "Doe",
        "dana@acme.io",
        account_id,
    )
    converted = store.get(lead)
    assert converted["IsConverted"] is True
    assert converted["ConvertedAccountId"] == account_id and converted["ConvertedContactId"] == contact_id
    assert converted["Status"] == "Closed - Converted"
    assert store.count("Opportunity") == 0
    (entry,) = emulator.requests_log.api_calls("convert_lead")
    assert entry.status == 200 and entry.record_count == 1

    again = soap_convert(emulator, token, lead_convert(lead))
    assert again.status_code == 200
    (result,) = results_of(again)
    assert field(result, "success") == "false"
    assert result.find("p:errors/p:statusCode", NS).text == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert store.count("Account") == 1 and store.count("Contact") == 1


def test_convert_onto_an_existing_account_and_mixed_results(emulator: Emulator, sf: Salesforce, token: str) -> None:
    account = sf.Account.create({"Name": "Acme"})["id"]
    lead = sf.Lead.create({"LastName": "Doe", "Company": "acme"})["id"]
    response = soap_convert(
        emulator, token, lead_convert(lead, account_id=account), lead_convert("00Q5g00000ZZZZZ"), lead_convert(lead)
    )
    ok, missing, twice = results_of(response)
    assert field(ok, "success") == "true" and field(ok, "accountId") == account
    assert emulator.store.get(field(ok, "contactId"))["AccountId"] == account
    assert missing.find("p:errors/p:statusCode", NS).text == "INVALID_CROSS_REFERENCE_KEY"
    assert twice.find("p:errors/p:statusCode", NS).text == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert emulator.store.count("Account") == 1
    bad_status = sf.Lead.create({"LastName": "Roe", "Company": "Roe Co"})["id"]
    (result,) = results_of(soap_convert(emulator, token, lead_convert(bad_status, status="Open - Not Contacted")))
    assert result.find("p:errors/p:statusCode", NS).text == "INVALID_STATUS"


def test_invalid_session_is_a_soap_fault(emulator: Emulator) -> None:
    response = soap_convert(emulator, "expired-session", lead_convert("00Q5g00000ZZZZZ"))
    assert response.status_code == 500
    root = ET.fromstring(response.content)  # noqa: S314
    fault = root.find("soapenv:Body/soapenv:Fault", NS)
    assert fault.find("faultcode").text == "sf:INVALID_SESSION_ID"
    assert "INVALID_SESSION_ID" in fault.find("faultstring").text


def test_malformed_soap_requests(emulator: Emulator, token: str) -> None:
    body = SOAP_ENVELOPE.format(session=token, converts=lead_convert("00Q5g00000ZZZZZ")).encode()
    no_action = requests.post(emulator.soap_url, data=body, headers={"Content-Type": "text/xml"}, timeout=5)
    assert no_action.status_code == 500 and b"No SOAPAction header!" in no_action.content
    garbage = requests.post(emulator.soap_url, data=b"<not xml", headers={"SOAPAction": "x"}, timeout=5)
    assert garbage.status_code == 500 and b"soapenv:Client" in garbage.content
    other = body.replace(b"convertLead>", b"merge>")
    wrong_op = requests.post(emulator.soap_url, data=other, headers={"SOAPAction": "merge"}, timeout=5)
    assert wrong_op.status_code == 500 and b"No operation available" in wrong_op.content

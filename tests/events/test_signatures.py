"""Standard Webhooks vectors: rotation, tampering, re-serialisation, clock skew in both directions."""

from __future__ import annotations

import base64
import json
import time

import pytest

from events.signatures import SignatureError, sign_standard_webhook, verify_standard_webhook
from tests.conftest import OLD_PROVISIONING_SECRET, PROVISIONING_SECRET, lifecycle_body, signed_headers

BODY = lifecycle_body("trial.started", {"workspace_id": "ws_1", "email": "a@acme.io"})


def verify(body: str | bytes, headers: dict[str, str], secrets=(PROVISIONING_SECRET,)) -> None:
    raw = body.encode() if isinstance(body, str) else body
    verify_standard_webhook(body=raw, headers=headers, secrets=list(secrets))


def test_known_vector_from_the_standard_webhooks_spec():
    # The example in the Standard Webhooks specification's reference implementations.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = '{"test": 2432232314}'
    assert (
        sign_standard_webhook(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_valid_signature_passes():
    verify(BODY, signed_headers(BODY))


def test_rotation_accepts_old_and_new_keys():
    both = (PROVISIONING_SECRET, OLD_PROVISIONING_SECRET)
    verify(BODY, signed_headers(BODY, secret=OLD_PROVISIONING_SECRET), secrets=both)
    verify(BODY, signed_headers(BODY, secret=PROVISIONING_SECRET), secrets=both)


def test_rotated_out_key_is_refused():
    with pytest.raises(SignatureError) as caught:
        verify(BODY, signed_headers(BODY, secret=OLD_PROVISIONING_SECRET))
    assert caught.value.code == "invalid_signature"


def test_several_signatures_in_the_header_any_match_passes():
    headers = signed_headers(BODY)
    headers["webhook-signature"] = "v1,Zm9vYmFy " + headers["webhook-signature"]
    verify(BODY, headers)


@pytest.mark.parametrize("position", [0, len(BODY) // 2, len(BODY) - 1])
def test_one_flipped_byte_in_the_body_is_refused(position):
    headers = signed_headers(BODY)
    raw = bytearray(BODY.encode())
    raw[position] ^= 0x01
    with pytest.raises(SignatureError) as caught:
        verify(bytes(raw), headers)
    assert caught.value.code == "invalid_signature"


def test_one_flipped_byte_in_the_signature_is_refused():
    headers = signed_headers(BODY)
    version, signature = headers["webhook-signature"].split(",")
    raw = bytearray(base64.b64decode(signature))
    raw[0] ^= 0x01
    headers["webhook-signature"] = f"{version},{base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(SignatureError):
        verify(BODY, headers)


def test_reserialised_json_is_refused():
    headers = signed_headers(BODY)
    reserialised = json.dumps(json.loads(BODY), indent=2)
    with pytest.raises(SignatureError) as caught:
        verify(reserialised, headers)
    assert caught.value.code == "invalid_signature"


def test_other_webhook_id_is_refused():
    headers = signed_headers(BODY, msg_id="msg_a")
    headers["webhook-id"] = "msg_b"
    with pytest.raises(SignatureError):
        verify(BODY, headers)


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_timestamps_beyond_300_seconds_either_way_are_stale(skew):
    with pytest.raises(SignatureError) as caught:
        verify(BODY, signed_headers(BODY, timestamp=int(time.time()) + skew))
    assert caught.value.code == "stale_timestamp"


@pytest.mark.parametrize("skew", [-290, 290])
def test_timestamps_within_300_seconds_pass(skew):
    verify(BODY, signed_headers(BODY, timestamp=int(time.time()) + skew))


@pytest.mark.parametrize("signature", ["", "v1", "v1,not base64!!", "v2,Zm9v", "garbage garbage", "v1,"])
def test_malformed_signature_headers_are_invalid_not_errors(signature):
    headers = signed_headers(BODY)
    headers["webhook-signature"] = signature
    with pytest.raises(SignatureError) as caught:
        verify(BODY, headers)
    assert caught.value.code == "invalid_signature"


def test_non_numeric_timestamp_is_invalid():
    headers = signed_headers(BODY)
    headers["webhook-timestamp"] = "yesterday"
    with pytest.raises(SignatureError) as caught:
        verify(BODY, headers)
    assert caught.value.code == "invalid_signature"


def test_non_utf8_body_is_invalid():
    with pytest.raises(SignatureError):
        verify(b"\xff\xfe", signed_headers("x"))

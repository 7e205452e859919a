"""Fuzzing the read API (CONTRACT §6) against the schema it publishes at /api/schema/.

Every operation under /api/ is called with generated valid and invalid parameters, with a reader's
token and without one. Schemathesis' default checks hold throughout: no 5xx, only documented status
codes, content types and headers, bodies that match the response schema; and a read writes nothing.
"""

from __future__ import annotations

import pytest

from tests.fuzz.helpers import row_counts
from tests.fuzz.schema import FUZZ_SETTINGS, fuzz_schema

pytestmark = pytest.mark.usefixtures("fuzz_settings", "api_data")

# The token is sent with every call, so no credentials are generated.
with_token = fuzz_schema(path_regex="^/api/", **{"with-security-parameters": False})
# Credentials are generated like any other parameter: random tokens and session cookies.
anonymous = fuzz_schema(path_regex="^/api/")


@with_token.parametrize()
@FUZZ_SETTINGS
def test_read_api_with_a_token(case, reader_token):
    before = row_counts()

    case.call_and_validate(headers={"Authorization": f"Token {reader_token}"})

    assert row_counts() == before


@anonymous.parametrize()
@FUZZ_SETTINGS
def test_read_api_without_a_valid_token_is_refused(case):
    before = row_counts()

    response = case.call_and_validate()

    assert response.status_code == 401, response.text
    assert row_counts() == before

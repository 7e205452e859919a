"""Fuzzing the signed webhooks (CONTRACT §2, §4, §5) against their schema at /api/schema/.

A valid signature or token cannot be guessed, so every generated request is unsigned or badly signed:
each must be refused as documented (no 5xx, documented status and body) and store nothing at all.
"""

from __future__ import annotations

import pytest

from tests.fuzz.helpers import row_counts
from tests.fuzz.schema import FUZZ_SETTINGS, fuzz_schema

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fuzz_settings")]

unsigned = fuzz_schema(path_regex="^/webhooks/")


@unsigned.parametrize()
@FUZZ_SETTINGS
def test_unsigned_webhook_requests_store_nothing(case):
    before = row_counts()

    response = case.call_and_validate()

    assert response.status_code in (401, 405, 413), response.text
    assert row_counts() == before

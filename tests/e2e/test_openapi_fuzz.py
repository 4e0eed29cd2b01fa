"""Schemathesis against the committed OpenAPI document, on the running local stack.

For generated requests (valid and invalid parameters, bounded examples per operation):
no 5xx, a status the document declares, the declared content type, a body matching its
schema, and the account's ledger untouched by any GET.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devtools import template
from devtools.local_seed import LocalAccount
from devtools.local_stack import LocalStack
from serverless_credits.storage.store import CreditsStore
from tests.e2e.support import wait_for_ledger

pytestmark = pytest.mark.e2e

DOCUMENT = template.PROJECT_ROOT / "docs" / "openapi.json"
MAX_EXAMPLES = 20

schema = schemathesis.openapi.from_path(DOCUMENT)


def ledger_state(store: CreditsStore, account_id: str) -> tuple[Any, ...]:
    """The account item's version and balance, and every ledger entry id."""
    account = store.accounts.get(account_id, consistent=True)
    assert account is not None
    entries, _ = store.entries.page(account_id, limit=1000)
    return account.version, account.balance, tuple(entry.transaction_id for entry in entries)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_documented_contract(
    case: schemathesis.Case[Any], stack: LocalStack, demo: LocalAccount, store: CreditsStore
) -> None:
    wait_for_ledger(store, demo.account_id)  # earlier tests' entries may still be on their way
    before = ledger_state(store, demo.account_id)

    case.call_and_validate(
        base_url=stack.api_url,
        headers={"X-API-Key": demo.api_key},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )

    if case.method.upper() == "GET":
        assert ledger_state(store, demo.account_id) == before

"""The committed OpenAPI document is generated from the handlers and must not drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools import openapi, template


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.build_document()


def test_the_committed_document_is_up_to_date() -> None:
    differences = openapi.check()
    assert differences == [], "\n".join(["run `make openapi`", *differences[:40]])


def test_it_documents_every_templated_route_with_the_api_key_scheme(
    document: dict[str, Any],
) -> None:
    routes = {
        (str(e["Properties"]["Method"]).lower(), e["Properties"]["Path"])
        for spec in template.functions().values()
        for e in spec.events.values()
        if e.get("Type") == "Api"
    }
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    assert documented == routes
    assert document["components"]["securitySchemes"] == {
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "API key issued at provisioning; API Gateway enforces its usage plan",
        }
    }
    assert document["security"] == [{"apiKey": []}]


def test_every_operation_documents_the_error_shape_and_request_id(document: dict[str, Any]) -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for item in document["paths"].values():
        for operation in item.values():
            responses = operation["responses"]
            assert "X-Request-Id" in responses["200"]["headers"]
            assert responses["200"]["content"]["application/json"]["schema"]["$ref"]
            for status in ("400", "403", "422", "429", "500"):
                assert responses[status]["content"]["application/json"]["schema"] == error_ref
    error = document["components"]["schemas"]["ErrorResponse"]
    assert set(error["properties"]) == {"error", "requestId"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_parameters_carry_their_bounds(document: dict[str, Any]) -> None:
    def parameter(path: str, name: str) -> dict[str, Any]:
        found = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
        assert len(found) == 1
        schema: dict[str, Any] = found[0]["schema"]
        return schema

    limit = parameter("/v1/credits/transactions", "limit")
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 50)
    days = parameter("/v1/credits/stats", "days")["anyOf"][0]
    assert (days["minimum"], days["maximum"]) == (1, 90)
    for name in ("from", "to", "startDate", "endDate", "period"):
        parameter("/v1/credits/stats", name)
    for name in ("offset", "cursor", "type", "from", "to"):
        parameter("/v1/credits/transactions", name)


def test_check_reports_a_stale_document(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    document = json.loads(openapi.DOCUMENT.read_text())
    document["paths"]["/v1/credits/balance"]["get"]["summary"] = "Edited by hand"
    stale.write_text(json.dumps(document, indent=2) + "\n")

    assert any("Edited by hand" in line for line in openapi.check(stale))
    assert openapi.main(["check", "--path", str(stale)]) == 1
    assert openapi.main(["check", "--path", str(tmp_path / "missing.json")]) == 1
    assert openapi.main(["write", "--path", str(stale)]) == 0
    assert openapi.check(stale) == []
    assert openapi.main(["check", "--path", str(stale)]) == 0


def test_a_route_served_but_not_templated_is_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    functions = openapi.http_functions()
    balance = next(f for f in functions if f.logical_id == "BalanceFunction")
    shrunk = openapi.HttpFunction(
        balance.logical_id,
        balance.module,
        balance.resolver,
        frozenset({("get", "/v1/credits/balance")}),
    )
    monkeypatch.setattr(
        openapi, "http_functions", lambda: [shrunk if f is balance else f for f in functions]
    )
    with pytest.raises(openapi.OpenApiDrift, match="BalanceFunction"):
        openapi.build_document()
    assert openapi.main(["check"]) == 1


def test_two_functions_may_not_define_one_schema_differently() -> None:
    first = {"components": {"schemas": {"Thing": {"type": "string"}}}}
    second = {"components": {"schemas": {"Thing": {"type": "integer"}}}}
    openapi._merge_components([("A", first), ("B", first)])
    with pytest.raises(openapi.OpenApiDrift, match=r"Thing differs between A and B"):
        openapi._merge_components([("A", first), ("B", second)])

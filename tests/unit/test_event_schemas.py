"""The events' JSON schemas in the repo match the models (`python -m devtools.event_schemas`)."""

from __future__ import annotations

import json

import jsonschema  # type: ignore[import-untyped]  # via schemathesis
import pytest

from devtools.event_schemas import SCHEMAS, schemas
from serverless_credits.domain.events import DETAIL_MODELS
from tests.unit.test_domain_events import step


@pytest.mark.parametrize("name", sorted(schemas()))
def test_the_schema_file_matches_the_model(name: str) -> None:
    path = SCHEMAS / name
    assert path.exists(), f"run `.venv/bin/python -m devtools.event_schemas` ({name} missing)"
    assert path.read_text(encoding="utf-8") == schemas()[name], (
        f"{name} drifted from the model: run `.venv/bin/python -m devtools.event_schemas`"
    )


def test_every_detail_type_has_a_schema_and_no_stray_files() -> None:
    assert {p.name for p in SCHEMAS.glob("*.json")} == {f"{k.value}.json" for k in DETAIL_MODELS}


def test_a_published_detail_validates_against_its_schema() -> None:
    for event in step("20", "-1"):
        schema = json.loads((SCHEMAS / f"{event.kind.value}.json").read_text(encoding="utf-8"))
        jsonschema.validate(event.envelope()["detail"], schema)

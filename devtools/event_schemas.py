"""JSON schemas of the balance events' `detail` (events/schemas/<kind>.json), generated from
the pydantic models in `serverless_credits.domain.events`:
`.venv/bin/python -m devtools.event_schemas` writes them; `tests/unit/test_event_schemas.py`
fails when the files drift from the models."""

from __future__ import annotations

import json
import sys

from devtools import template
from serverless_credits.domain.events import DETAIL_MODELS, DETAIL_TYPES, SOURCE

SCHEMAS = template.PROJECT_ROOT / "events" / "schemas"


def schemas() -> dict[str, str]:
    """File name -> text of every detail type's schema."""
    found: dict[str, str] = {}
    for kind, model in DETAIL_MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://serverless-credits/events/{kind.value}.json",
            "description": f"detail of `{DETAIL_TYPES[kind]}` events (source {SOURCE})",
            "x-detail-type": DETAIL_TYPES[kind],
            **schema,
        }
        found[f"{kind.value}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return found


def main() -> int:
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (SCHEMAS / name).write_text(text, encoding="utf-8")
        print(SCHEMAS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

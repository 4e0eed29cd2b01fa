"""Environment settings, parsed and validated once per process."""

from __future__ import annotations

import functools
import os

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Settings(BaseModel):
    """What a function reads from its environment (names as `template.yaml` sets them)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    table_name: str = Field(alias="TABLE_NAME", min_length=3, max_length=255)
    stage: str = Field(default="dev", alias="STAGE")
    idempotency_retention_hours: int = Field(
        default=48, alias="IDEMPOTENCY_RETENTION_HOURS", ge=24, le=24 * 365
    )
    cursor_signing_key: SecretStr | None = Field(default=None, alias="CURSOR_SIGNING_KEY")
    debit_function_name: str | None = Field(default=None, alias="DEBIT_FUNCTION_NAME")
    # How long a function trusts what it cached: API-key mappings and the price list.
    cache_seconds: float = Field(default=60.0, alias="CACHE_SECONDS", ge=0, le=3600)
    # Bounds for optimistic-concurrency retries of one write.
    max_write_attempts: int = Field(default=100, alias="MAX_WRITE_ATTEMPTS", ge=1, le=200)
    # API Gateway usage plans an operator attaches new API keys to, per tier (provisioning).
    free_usage_plan_id: str | None = Field(default=None, alias="FREE_USAGE_PLAN_ID")
    pro_usage_plan_id: str | None = Field(default=None, alias="PRO_USAGE_PLAN_ID")


@functools.cache
def get_settings() -> Settings:
    """The process's settings; the one place that reads `os.environ`."""
    return Settings.model_validate(dict(os.environ))

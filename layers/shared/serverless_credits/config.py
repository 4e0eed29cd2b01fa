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
    # The pagination cursors' HMAC key: read at runtime from this Secrets Manager secret
    # (`wiring.cursor_signer`, cached `secret_cache_seconds`), never from the environment.
    cursor_signing_secret_arn: str | None = Field(default=None, alias="CURSOR_SIGNING_SECRET_ARN")
    secret_cache_seconds: int = Field(default=300, alias="SECRET_CACHE_SECONDS", ge=0, le=86400)
    # Local development and tests only (env.json, the local stack): the key itself, used
    # when no secret is named. The template names the secret, so in AWS this is ignored.
    cursor_signing_key: SecretStr | None = Field(default=None, alias="CURSOR_SIGNING_KEY")
    debit_function_name: str | None = Field(default=None, alias="DEBIT_FUNCTION_NAME")
    # How long a function trusts what it cached: API-key mappings and the price list.
    cache_seconds: float = Field(default=60.0, alias="CACHE_SECONDS", ge=0, le=3600)
    # How long an idempotency lease keeps other requests with its key away. Far longer than
    # any request can take (the functions time out after 10 s), so that no late update can
    # land after recovery has decided the leased operation never reached the account.
    lease_seconds: int = Field(default=60, alias="LEASE_SECONDS", ge=30, le=3600)
    # A ledger gap the materializer has not filled this long after its head last moved is
    # the reconciler's to fill from the idempotency records (earlier, it is in flight).
    reconcile_settle_seconds: int = Field(
        default=900, alias="RECONCILE_SETTLE_SECONDS", ge=0, le=86400
    )
    # How long a request waits for another request with the same key before answering
    # OPERATION_IN_PROGRESS (or for the materializer, after a write's outcome was unknown).
    in_progress_wait_seconds: float = Field(
        default=1.0, alias="IN_PROGRESS_WAIT_SECONDS", ge=0, le=5
    )
    # Balance events (EventPublisherFunction): the custom bus, the queue that keeps events
    # the bus refused, and how long a pending auto-reload request holds back a new one.
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME")
    event_replay_queue_url: str | None = Field(default=None, alias="EVENT_REPLAY_QUEUE_URL")
    auto_reload_timeout_seconds: int = Field(
        default=3600, alias="AUTO_RELOAD_TIMEOUT_SECONDS", ge=60, le=7 * 86400
    )
    # API Gateway usage plans an operator attaches new API keys to, per tier (provisioning).
    free_usage_plan_id: str | None = Field(default=None, alias="FREE_USAGE_PLAN_ID")
    pro_usage_plan_id: str | None = Field(default=None, alias="PRO_USAGE_PLAN_ID")


@functools.cache
def get_settings() -> Settings:
    """The process's settings; the one place that reads `os.environ`."""
    return Settings.model_validate(dict(os.environ))

"""What the end-to-end tests share besides fixtures."""

from __future__ import annotations

from typing import Any

import requests

# Template parameters for the test stack: a small free-plan quota, the default throttle.
FREE_PLAN = {"FreePlanRateLimit": "5", "FreePlanBurstLimit": "10", "FreePlanQuotaPerDay": "12"}


class Api:
    """The HTTP API over real HTTP, as a customer calls it."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if api_key is not None:
            self.session.headers["X-API-Key"] = api_key

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base_url}{path}", params=params or None, timeout=10)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

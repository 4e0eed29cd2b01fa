"""API-key mappings and the price list: small items read through short caches."""

from __future__ import annotations

from botocore.exceptions import ClientError

from serverless_credits.domain.models import ApiKeyMapping, PriceList
from serverless_credits.storage import keys
from serverless_credits.storage.items import Table, storage_failure, to_item


class CatalogStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    def put_api_key_mapping(self, mapping: ApiKeyMapping) -> None:
        self._put(to_item(mapping, pk=keys.apikey_pk(mapping.api_key_id), sk=keys.APIKEY_SK))

    def get_api_key_mapping(self, api_key_id: str) -> ApiKeyMapping | None:
        item = self._table.get(keys.apikey_pk(api_key_id), keys.APIKEY_SK)
        return ApiKeyMapping.model_validate(item) if item else None

    def put_price_list(self, prices: PriceList) -> None:
        self._put(to_item(prices, pk=keys.PRICES_PK, sk=keys.PRICES_CURRENT_SK))

    def get_price_list(self) -> PriceList | None:
        item = self._table.get(keys.PRICES_PK, keys.PRICES_CURRENT_SK)
        return PriceList.model_validate(item) if item else None

    def _put(self, item: dict[str, object]) -> None:
        try:
            self._table.client.put_item(TableName=self._table.name, Item=item)  # type: ignore[arg-type]
        except ClientError as exc:
            raise storage_failure("put_item", exc) from exc

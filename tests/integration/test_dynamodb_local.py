"""The foundation: DynamoDB Local starts from the npm package and takes the template's table."""

from __future__ import annotations

import pytest

from devtools import template
from serverless_credits.storage.store import CreditsStore

pytestmark = pytest.mark.integration


def test_table_is_created_from_the_template(local_store: CreditsStore) -> None:
    description = local_store.client.describe_table(TableName=local_store.table_name)["Table"]
    expected = template.resource("CreditsTable")["Properties"]

    assert description["KeySchema"] == expected["KeySchema"]
    assert sorted(description["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        expected["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    ttl = local_store.client.describe_time_to_live(TableName=local_store.table_name)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == template.ttl_attribute()


def test_the_library_reaches_dynamodb_local_through_boto3s_standard_variable(
    local_store: CreditsStore, dynamodb_local_endpoint: str
) -> None:
    assert local_store.client.meta.endpoint_url == dynamodb_local_endpoint


def test_the_table_streams_new_and_old_images_as_the_template_says(
    local_store: CreditsStore,
) -> None:
    """The materializer reads the account item's stream: DynamoDB Local must serve it."""
    description = local_store.client.describe_table(TableName=local_store.table_name)["Table"]
    expected = template.resource("CreditsTable")["Properties"]["StreamSpecification"]

    assert expected["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert description["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": expected["StreamViewType"],
    }
    assert description["LatestStreamArn"]

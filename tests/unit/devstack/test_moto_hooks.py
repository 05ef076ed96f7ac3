"""The fast DynamoDB serializer answers byte for byte what moto's own serializer answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devstack import moto_hooks

#: an item with every kind of AttributeValue, nested, with the edge cases (empty strings,
#: empty maps and lists, names with dots) next to the job records' usual strings and numbers
RICH_ITEM: dict[str, Any] = {
    "pk": {"S": "job#01J"},
    "empty": {"S": ""},
    "n": {"N": "12.5"},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "blob": {"B": base64.b64encode(b"\x00\x01bytes").decode()},
    "blobs": {"BS": [base64.b64encode(b"a").decode(), base64.b64encode(b"b").decode()]},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "verdicts": {
        "M": {
            "demo-v1": {"M": {"label": {"S": "regular"}, "p": {"N": "0.91"}}},
            "a.b": {"L": [{"S": "x"}, {"N": "1"}, {"M": {}}]},
            "with-bool": {"M": {"alert": {"BOOL": False}}},
        }
    },
    "emptymap": {"M": {}},
    "emptylist": {"L": []},
    "mixed": {"L": [{"S": "s"}, {"NULL": True}, {"B": base64.b64encode(b"z").decode()}]},
}
PLAIN_ITEM = {k: v for k, v in RICH_ITEM.items() if k in ("pk", "empty", "n", "ss", "ns")}


def _results(item: dict[str, Any]) -> dict[str, Any]:
    """What moto's DynamoDB responses hand the serializer, per operation (DynamoResult)."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import dynamo_to_dict

    typed = {name: DynamoType(value) for name, value in item.items()}
    return {
        "GetItem": dynamo_to_dict({"Item": typed}),
        "UpdateItem": dynamo_to_dict({"Attributes": typed}),
        "BatchGetItem": dynamo_to_dict(
            {"Responses": {"jobs": [typed, typed]}, "UnprocessedKeys": {}}
        ),
        "Query": dynamo_to_dict({"Items": [typed], "Count": 1, "ScannedCount": 1}),
    }


def _serialize(operation: str, result: Any) -> Any:
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model

    model = get_service_model("dynamodb")
    serializer = get_serializer_class("dynamodb", "json")(
        operation_model=model.operation_model(operation),
        value_picker=XFormedAttributePicker(response_transformers={}),
    )
    return serializer.serialize(result)["body"]


@pytest.mark.parametrize("item", [RICH_ITEM, PLAIN_ITEM], ids=["every-type", "strings-numbers"])
def test_the_fast_serializer_answers_what_motos_answers(item: dict[str, Any]) -> None:
    results = _results(item)
    moto_bodies = {op: _serialize(op, result) for op, result in results.items()}
    moto_hooks.install_fast_dynamodb_serializer()
    try:
        fast_bodies = {op: _serialize(op, result) for op, result in _results(item).items()}
        from moto.core.serialize import get_serializer_class

        installed = get_serializer_class("dynamodb", "json")
        assert installed.__name__ == "FastAttributeValues"
    finally:
        moto_hooks.remove_fast_dynamodb_serializer()
    assert fast_bodies == moto_bodies
    # and the answer carries the item (not an empty body that would also compare equal)
    assert json.loads(fast_bodies["GetItem"])["Item"]["pk"] == {"S": "job#01J"}


def test_removing_the_fast_serializer_restores_motos() -> None:
    from moto.core.serialize import JSONSerializer, get_serializer_class

    moto_hooks.install_fast_dynamodb_serializer()
    moto_hooks.install_fast_dynamodb_serializer()  # twice: still one to remove
    moto_hooks.remove_fast_dynamodb_serializer()
    assert get_serializer_class("dynamodb", "json") is JSONSerializer


def test_only_strings_numbers_sets_maps_and_lists_take_the_fast_path() -> None:
    plain = moto_hooks._plain_attribute_value
    assert plain({"M": {"a": {"L": [{"S": "x"}, {"NS": ["1"]}]}}}) == {
        "M": {"a": {"L": [{"S": "x"}, {"NS": ["1"]}]}}
    }
    for other in ({"BOOL": True}, {"NULL": True}, {"B": b"x"}, {"M": {"a": {"BOOL": True}}}):
        assert plain(other) is None
    assert plain({"S": "a", "N": "1"}) is None  # not one AttributeValue

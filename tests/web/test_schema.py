"""Request bodies are checked against their dataclasses; every wrong shape is a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from slum.errors import BadRequest
from slum.web.schema import conforms, from_json


@dataclass
class Body:
    name: str
    count: int | None = None
    extra: dict[str, Any] | str | None = None


def test_a_good_body() -> None:
    assert from_json(Body, {"name": "a", "count": 2}) == Body("a", 2)
    assert from_json(Body, {"name": "a", "extra": {"k": [1]}, "later": 1}) == Body("a", None, {"k": [1]})


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "expected a JSON object"),
        ("x", "expected a JSON object"),
        ({}, "name is required"),
        ({"name": 1}, "name must be a string"),
        ({"name": "a", "count": True}, "count must be an integer or null"),
        ({"name": "a", "count": 1.5}, "count must be an integer or null"),
        ({"name": "a", "extra": [1]}, "extra must be a JSON object or a string or null"),
    ],
)
def test_a_bad_body_says_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        from_json(Body, data)


def test_conforms() -> None:
    assert conforms(1, float) and not conforms(True, float)
    assert conforms([1, 2], list[int]) and not conforms([1, "2"], list[int])
    assert conforms({"a": "b"}, dict[str, str]) and not conforms({"a": 1}, dict[str, str])

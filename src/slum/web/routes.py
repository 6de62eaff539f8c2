"""The API's route table. Each view is declared once with its method, path, prefixes and types;
`endpoint` registers it under every prefix it answers on (`/api` and `/_/api` for the fleet
routes, from this one declaration) and records it for the OpenAPI document. Request bodies are
read here, the one place that decides what a body may be."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from quart import Blueprint, request

from slum.errors import BadRequest, SlumError
from slum.web.schema import from_json

T = TypeVar("T")
View = Callable[..., Awaitable[Any]]

API = "/api"  # scripts and the fleet (tenement's paths)
DASH = "/_/api"  # the dashboard's API
ROOT = ""  # tenement's /health, /metrics
BOTH = (API, DASH)
DASHBOARD = (DASH,)
MAX_INT = 2**62  # ids, offsets: anything larger cannot be a row and would overflow SQLite


class UnsupportedMediaType(SlumError):
    status = 415


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the Quart rule after the prefix: /servers/<ref>
    prefixes: tuple[str, ...]
    view: View
    body: type | None  # a dataclass: the JSON object the view reads
    response: Any  # a type: what a 2xx answer holds
    status: int
    query: type | None  # a TypedDict: the query parameters
    content: str  # the response's media type
    public: bool

    @property
    def summary(self) -> str:
        doc = (self.view.__doc__ or self.view.__name__.replace("_", " ")).strip()
        return doc.split("\n\n")[0].replace("\n", " ")


ROUTES: list[Route] = []


def endpoint(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    prefixes: tuple[str, ...] = DASHBOARD,
    body: type | None = None,
    response: Any = Any,
    status: int = 200,
    query: type | None = None,
    content: str = "application/json",
    public: bool = False,
) -> Callable[[View], View]:
    def register(view: View) -> View:
        ROUTES.append(Route(method, path, prefixes, view, body, response, status, query, content, public))
        handler = view if method in ("GET", "HEAD") else _json_only(view)
        for prefix in prefixes:
            bp.add_url_rule(
                prefix + path,
                endpoint=f"{view.__name__}{prefix.replace('/', '_')}",
                view_func=handler,
                methods=[method],
            )
        return view

    return register


def _json_only(view: View) -> View:
    """A state-changing request that sends a body says it is JSON, even where the view reads
    none: a form or text/plain post (what a page on another site can send without asking) is
    refused before it acts."""

    @functools.wraps(view)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("content-type") and not request.is_json:
            raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
        return await view(*args, **kwargs)

    return checked


async def json_body() -> Any:
    """The decoded JSON body. A state-changing request must say it is JSON (a form or text/plain
    body from another site is refused: 415), be UTF-8 and parse; each failure is a 4xx."""
    if not request.is_json:
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    raw = cast(bytes, await request.get_data(as_text=False))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    except ValueError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None


async def read_body(cls: type[T]) -> T:
    """The request body as the dataclass `cls`, checked field by field."""
    return from_json(cls, await json_body())


async def body() -> dict[str, Any]:
    data: Any = await json_body()
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object in the request body")
    return data


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def int_arg(name: str, default: int, low: int = 0, high: int = MAX_INT) -> int:
    """An integer query parameter between low and high."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value

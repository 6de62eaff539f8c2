"""The OpenAPI 3.1 description of the API, built from the route table and the request and
response types declared next to the views (web/routes.py, web/schema.py): never kept by hand."""

from __future__ import annotations

import re
from typing import Any, TypedDict, get_type_hints

from quart import Blueprint, Response, jsonify

from slum import __version__
from slum.config import DNS_LABEL
from slum.web.routes import DASHBOARD, ROUTES, Route, endpoint
from slum.web.schema import schema_of

bp = Blueprint("openapi", __name__)

_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_LABEL = DNS_LABEL.pattern
# What a path parameter is, by its name in the rule.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "ref": {"type": "string", "pattern": f"^{_LABEL}:{_LABEL}$", "description": "an instance: SERVICE:ID"},
    "tenant_id": {"type": "string", "pattern": f"^{_LABEL}$"},
}
_ERROR = {"$ref": "#/components/responses/Error"}


def document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        for prefix in route.prefixes:
            path = _PARAM.sub(r"{\1}", prefix + route.path)
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, prefix, components)
    components["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "slum",
            "version": __version__,
            "description": 'slum\'s HTTP API. Errors are JSON {"error": "..."} with a 4xx '
            "status for bad input, never a 500 for it.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {
                "Error": {
                    "description": "what was wrong",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "a token from `slum token-gen`"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "slum_session",
                    "description": "the dashboard's session, from POST /_/api/login",
                },
            },
        },
        "security": [{"token": []}, {"session": []}],
    }


def _operation(route: Route, prefix: str, components: dict[str, Any]) -> dict[str, Any]:
    # The same view under a second prefix needs an id of its own.
    op_id = route.view.__name__ + (
        "" if prefix == route.prefixes[-1] else "_" + (prefix.strip("/").replace("/", "_") or "root")
    )
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": route.summary,
        "tags": [route.view.__module__.rsplit(".", 1)[-1]],
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS.get(name, {"type": "string"})}
        for name in _PARAM.findall(route.path)
    ]
    if route.query is not None:
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema_of(hint, components)}
            for name, hint in get_type_hints(route.query).items()
        ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_of(route.body, components)}},
        }
    ok: dict[str, Any] = {"description": "success"}
    if route.content == "application/json":
        ok["content"] = {"application/json": {"schema": schema_of(route.response, components)}}
    else:
        ok["content"] = {route.content: {"schema": {"type": "string"}}}
    op["responses"] = {str(route.status): ok, "4XX": _ERROR}
    if route.public:
        op["security"] = []
    return op


class OpenAPI(TypedDict):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


@endpoint(bp, "GET", "/openapi.json", prefixes=DASHBOARD, response=OpenAPI)
async def openapi() -> Response:
    """This description."""
    return jsonify(document())

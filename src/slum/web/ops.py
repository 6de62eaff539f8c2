"""POST /_/api/reload: re-read the config file slum was started with and apply the difference
(`slum reload`; SIGHUP does the same). A config with errors is a 400 with the same message as at
start, and nothing changes."""

from __future__ import annotations

from quart import Response, jsonify
from quart_trio import QuartTrio

from slum.errors import Unavailable
from slum.web.context import WebContext


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.post("/_/api/reload")
    async def reload() -> Response:
        run = ctx.reload
        if run is None:
            raise Unavailable("this server cannot reload")
        return jsonify(await run())

"""A websocket echo server (trio-websocket) on $PORT: echoes text messages; "close:CODE" closes
with that code; GET /health over plain HTTP is not served (TCP health check)."""

import os

import trio
from trio_websocket import ConnectionClosed, serve_websocket


async def handler(request):  # type: ignore[no-untyped-def]
    ws = await request.accept()
    while True:
        try:
            message = await ws.get_message()
        except ConnectionClosed:
            return
        if isinstance(message, str) and message.startswith("close:"):
            await ws.aclose(code=int(message[6:]), reason="asked")
            return
        await ws.send_message(message)


async def main() -> None:
    await serve_websocket(handler, "127.0.0.1", int(os.environ["PORT"]), ssl_context=None)


trio.run(main)

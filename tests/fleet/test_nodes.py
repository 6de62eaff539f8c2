"""Calls to other nodes are bounded as a whole: a node that accepts and never answers, or that
trickles its answer a byte at a time (which httpx's per-read timeout never catches), fails within
the call's timeout. A node marked offline or with an unusable address is not asked at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
import trio

from slum.fleet import nodes
from slum.store.registry import Server

Handler = Callable[[trio.SocketStream], Awaitable[None]]


def server(address: str, status: str = "online") -> Server:
    return Server(
        id="s1",
        name="far",
        address=address,
        created_at="",
        status=status,
        capacity=None,
        tenant_count=1,
        token="slum_x",
    )


async def silent(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()  # accepts, reads nothing, answers nothing


async def trickle(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\n")
    while True:  # a header byte every 50 ms: each read is quick, the answer never ends
        await trio.sleep(0.05)
        await stream.send_all(b"X")


@pytest.fixture
async def listen(nursery: trio.Nursery) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    async def start(handler: Handler) -> str:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    yield start


@pytest.mark.parametrize("handler", [silent, trickle], ids=["silent", "trickle"])
async def test_a_node_that_does_not_answer_fails_within_the_bound(
    listen: Callable[[Handler], Awaitable[str]], handler: Handler
) -> None:
    address = await listen(handler)
    started = trio.current_time()
    with pytest.raises(nodes.NodeFailed) as caught:
        await nodes.call(server(address), "GET", "/_/api/instances", timeout_s=0.5)
    assert trio.current_time() - started < 1.5
    assert address in caught.value.message and caught.value.status == 502


def test_only_an_online_node_with_a_usable_address_is_asked() -> None:
    assert nodes.unreachable(server("http://127.0.0.1:9")) is None
    assert nodes.unreachable(server("http://127.0.0.1:9", "offline")) == "server far is offline"
    assert nodes.unreachable(server("http://a:b:c")) == "server far is invalid"

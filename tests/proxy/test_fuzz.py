"""Fuzzing the edge's parsing with hypothesis: whatever bytes a client or an upstream sends, in
whatever pieces, only the documented errors come out (ClientError and ClientGone for clients,
UpstreamError for upstreams), and a well-formed message comes out as it went in.

Bounded for CI: a few hundred examples per property, about a minute in all on a slow machine."""

from __future__ import annotations

import itertools
import socket

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slum.proxy.http import ClientConnection, ClientError, ClientGone, ResponseHead, UpstreamError
from slum.proxy.io import Connection

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20
)
value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
headers = st.lists(st.tuples(token, value), max_size=8).map(
    lambda hs: [
        (n, v)
        for n, v in hs
        if n.lower() not in ("content-length", "transfer-encoding", "host", "connection", "upgrade", "expect")
    ]
)
body = st.binary(max_size=3000)
# Pieces of the head vocabulary, so random messages get deep into the parser, not just its
# first byte.
fragments = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 103 E\r\n",
        b"HTTP/1.0 204 N\r\n",
        b"Host: a\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: x\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Connection: close\r\n",
        b"Connection: upgrade\r\nUpgrade: ws\r\n",
        b"\r\n",
        b"\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"zz\r\n",
        b"X-A: b\r\n",
        b" folded\r\n",
        b"\x00",
        b":",
        b"Expect: 100-continue\r\n",
        b"HTTP/1.1 101 S\r\n",
        b"HTTP/1.1 2000 X\r\n",
    ]
)
messages = st.one_of(
    st.binary(max_size=400), st.lists(st.one_of(fragments, st.binary(max_size=8)), max_size=24).map(b"".join)
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a] or [b""]


def drive_client(pieces: list[bytes]) -> list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]]:
    """Feed pieces to a ClientConnection over a socketpair; collect what it hands out."""
    out: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]] = []

    async def main() -> None:
        a, b = socket.socketpair()
        conn = ClientConnection(Connection(a), 5, 5, 5)
        try:

            async def feed() -> None:
                for piece in pieces:
                    await trio.to_thread.run_sync(b.sendall, piece)
                b.shutdown(socket.SHUT_WR)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                try:
                    while (req := await conn.next_request()) is not None:
                        got = b""
                        while (piece := await conn.body_chunk()) is not None:
                            got += piece
                        out.append((req.method, req.url, req.headers, got))
                except (ClientError, ClientGone):
                    pass
                # The feeder may be blocked on a full socket after an error: let it go.
                nursery.cancel_scope.cancel()
        finally:
            conn.stream.close()
            b.close()

    trio.run(main)
    return out


@FUZZ
@given(messages, st.lists(st.integers(min_value=0, max_value=4000), max_size=5))
def test_client_bytes_raise_only_documented_errors(data: bytes, cuts: list[int]) -> None:
    drive_client(split(data, cuts))


@FUZZ
@given(messages, st.lists(st.integers(min_value=0, max_value=4000), max_size=5))
def test_upstream_bytes_raise_only_upstream_errors(data: bytes, cuts: list[int]) -> None:
    resp = ResponseHead()
    try:
        for piece in split(data, cuts):
            resp.feed(piece)
            if resp.complete:
                break
    except UpstreamError as e:
        assert e.status == 502


@FUZZ
@given(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]),
    token,
    headers,
    body,
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=4),
)
def test_well_formed_requests_round_trip(
    method: bytes, path: str, hs: list[tuple[str, str]], payload: bytes, chunked: bool, cuts: list[int]
) -> None:
    head = b"%s /%s HTTP/1.1\r\nHost: app.localhost\r\n" % (method, path.encode())
    head += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in hs)
    if chunked:
        framed = (
            b"".join(
                b"%x\r\n%s\r\n" % (len(payload[i : i + 700]), payload[i : i + 700])
                for i in range(0, len(payload), 700)
            )
            + b"0\r\n\r\n"
        )
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + framed
    else:
        data = head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
    got = drive_client(split(data + data, cuts))  # twice: pipelined
    assert len(got) == 2
    for m, url, got_headers, got_body in got:
        assert (m, url, got_body) == (method, b"/" + path.encode(), payload)
        assert [(n.decode(), v.decode()) for n, v in got_headers[1 : 1 + len(hs)]] == hs


@FUZZ
@given(
    st.integers(min_value=200, max_value=599),
    headers,
    body,
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=4),
)
def test_well_formed_responses_round_trip(
    status: int, hs: list[tuple[str, str]], payload: bytes, chunked: bool, interim: bool, cuts: list[int]
) -> None:
    if status in (204, 304):
        payload = b""
    head = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" if interim else b""
    head += b"HTTP/1.1 %d Whatever\r\n" % status
    head += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in hs)
    if chunked and status not in (204, 304):
        data = (
            head
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"")
            + b"0\r\n\r\n"
        )
        expected = [*hs, ("Transfer-Encoding", "chunked")]
    else:
        data = head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        expected = [*hs, ("Content-Length", str(len(payload)))]
    resp = ResponseHead()
    for piece in split(data, cuts):
        resp.feed(piece)
    assert resp.complete and resp.status == status and not resp.unsolicited
    assert [(n.decode(), v.decode()) for n, v in resp.headers] == expected
    assert b"".join(resp.body) == payload

"""/ws frames that cannot be parsed or make no sense are answered ``bad_request`` (§7): the
socket stays open whatever the frame holds (deep nesting, odd types, surrogates, huge numbers)."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support import DevUser, ServerProcess
from tests.support.catalog import build_course
from tests.support.realtime import recv, send

DEEP = 30_000  # 60 KB of brackets: under the 64 KiB frame limit, far past any recursion limit


def _bad_frames(course: str) -> list[str]:
    channel = f"course:{course}"
    return [
        "[" * DEEP + "]" * DEEP,
        '{"a":' * (DEEP // 3) + "1" + "}" * (DEEP // 3),
        json.dumps({"type": "subscribe", "channel": channel, "since": 0}).replace(
            '"since": 0', '"since": ' + "[" * 20_000 + "]" * 20_000),
        '{"type":"' + "x" * 1000 + '"}',
        json.dumps({"type": ["ping"]}),
        json.dumps({"type": {"a": [1, 2, {"b": None}]}}),
        json.dumps({"type": None}),
        json.dumps({"channel": channel}),
        json.dumps({"type": "subscribe", "channel": ["course", course]}),
        json.dumps({"type": "subscribe", "channel": {"c": channel}}),
        json.dumps({"type": "subscribe", "channel": 12}),
        json.dumps({"type": "subscribe", "channel": "course:\ud800"}),  # lone surrogate (escaped in JSON)
        json.dumps({"type": "subscribe", "channel": "\udfff:" + course}),
        json.dumps({"type": "typing", "channel": "thread:\ud800"}),
        json.dumps({"type": "subscribe", "channel": "x" * 5000}),
        json.dumps({"type": "subscribe", "channel": channel, "since": "²"}),  # isdigit() but not int()
        json.dumps({"type": "subscribe", "channel": channel, "since": "٣"}),
        json.dumps({"type": "subscribe", "channel": channel, "since": 10 ** 300}),
        json.dumps({"type": "subscribe", "channel": channel, "since": -(10 ** 300)}),
        '{"type":"subscribe","channel":"' + channel + '","since":1e999}',
        '{"type":"subscribe","channel":"' + channel + '","since":NaN}',
        '{"type":"subscribe","channel":"' + channel + '","since":' + "9" * 5000 + "}",
        json.dumps({"type": "subscribe", "channel": channel, "since": {"$gt": 0}}),
        json.dumps({"type": "subscribe", "channel": channel, "since": [1]}),
        "null", '"ping"', "1e999", "NaN", "-Infinity", "[]", "{}", "", " ", "\ufeff{}",
        '{"type":"ping"', '{"type":"\\ud800"}', '{"type":"subscribe","channel":"course:\\udc80"}',
    ]


async def test_unparseable_frames_get_bad_request_and_the_socket_stays_open(
        server: ServerProcess, client: httpx.AsyncClient, alice: DevUser) -> None:
    course = (await build_course(client, alice)).id
    async with connect(f"{server.ws_url}/ws?token={alice.token}", open_timeout=10) as ws:
        for raw in _bad_frames(course):
            await ws.send(raw)
            answer = await recv(ws)
            assert answer["type"] == "error" and answer["code"] == "bad_request", (raw[:80], answer)
            assert len(json.dumps(answer)) < 1024, "an error never echoes a big input back"
        # unsubscribing from a channel one is not on is silent, whatever its name
        await send(ws, {"type": "unsubscribe", "channel": "\ud800"})
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
        channel = f"course:{course}"
        await send(ws, {"type": "subscribe", "channel": channel})
        assert (await recv(ws))["type"] == "subscribed"


@pytest.mark.parametrize("since", ["0", 0])
async def test_a_good_subscribe_after_garbage_still_works(
        server: ServerProcess, client: httpx.AsyncClient, alice: DevUser, since: object) -> None:
    course = (await build_course(client, alice)).id
    channel = f"course:{course}"
    # what a clean socket is answered (building the course recorded its outline.updated events)
    async with connect(f"{server.ws_url}/ws?token={alice.token}", open_timeout=10) as clean:
        await send(clean, {"type": "subscribe", "channel": channel, "since": since})
        expected = await recv(clean)
    assert expected["type"] == "subscribed" and expected["channel"] == channel and expected["last_id"] >= 1
    async with connect(f"{server.ws_url}/ws?token={alice.token}", open_timeout=10) as ws:
        await ws.send("[" * DEEP + "]" * DEEP)
        assert (await recv(ws))["code"] == "bad_request"
        await send(ws, {"type": "subscribe", "channel": channel, "since": since})
        assert await recv(ws) == expected

"""A per-account cap on open /ws sockets per node (issue 11, fixa item 3).

Every /ws budget (backlog, frame rate, subscriptions) is per socket, so one account opening N
sockets multiplied them. Now the user's 17th open socket (WS_SOCKETS_PER_USER=16) is accepted
and closed 4429, another user still connects, and a closed socket frees its place.
"""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import ClientConnection, connect

from tests.support import DevUser, ServerProcess

CAP = 16


async def _ping(ws: ClientConnection) -> dict[str, object]:
    await ws.send(json.dumps({"type": "ping"}))
    answer: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return answer


async def test_one_users_socket_past_the_cap_is_closed_4429(
        server: ServerProcess, alice: DevUser, bob: DevUser) -> None:
    url = f"{server.ws_url}/ws?token="
    mine = [await connect(url + alice.token) for _ in range(CAP)]
    try:
        for ws in mine:  # all served
            assert (await _ping(ws))["type"] == "pong"
        extra = await connect(url + alice.token)
        await asyncio.wait_for(extra.wait_closed(), 10)
        assert extra.close_code == 4429
        other = await connect(url + bob.token)
        assert (await _ping(other))["type"] == "pong"
        await other.close()
        await mine.pop().close()
        # A closed socket frees its place (once the server's side of it has ended: retry a
        # refused attempt for at most 5 s).
        async with asyncio.timeout(5):
            while True:
                again = await connect(url + alice.token)
                try:
                    assert (await _ping(again))["type"] == "pong"
                    break
                except Exception:
                    assert again.close_code == 4429
        mine.append(again)
    finally:
        for ws in mine:
            await ws.close()

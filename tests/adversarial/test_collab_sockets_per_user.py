"""A per-account cap on open collab sockets per node (issue 11, fixa item 3).

Every collab budget (receive rate, sync bursts, awareness) is per socket, so one account opening
N sockets multiplied them. Now the user's 33rd open socket (COLLAB_SOCKETS_PER_USER=32) is
accepted and closed 4429 while another user still joins.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import ServerProcess, dev_user
from tests.support.collab import YClient, closed_with, make_lesson

CAP = 32


async def test_one_users_collab_socket_past_the_cap_is_closed_4429(
        server: ServerProcess, client: httpx.AsyncClient, db: AsyncEngine) -> None:
    author = await dev_user(client, "Author")
    other = await dev_user(client, "Other")
    lesson = await make_lesson(db, author.clerk_id)
    theirs = await make_lesson(db, other.clerk_id)
    mine = [await YClient.connect(server.ws_url, lesson.id, author.token) for _ in range(CAP)]
    try:
        assert await closed_with(server.ws_url, f"/collab/lessons/{lesson.id}?token={author.token}") == 4429
        mine.append(await YClient.connect(server.ws_url, theirs.id, other.token))  # not capped
    finally:
        for peer in mine:
            await peer.close()

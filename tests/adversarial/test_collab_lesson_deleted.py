"""A lesson deleted while its room is open: the room ends quietly, no foreign-key traceback.

Before: recording the room's last version ("close") inserted a version of a lesson that no
longer existed; the foreign-key violation was logged as a traceback ("closing room failed"),
and the periodic version repeated it every minute while editors stayed connected.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import ServerProcess, dev_user, eventually
from tests.support.catalog import build_course, ok
from tests.support.collab import YClient


async def test_deleting_a_lesson_under_an_open_room(database_url: str, data_dir: Path) -> None:
    # Its own server at LOG_LEVEL=info: the room's "lesson is gone" line is the event waited on.
    server = ServerProcess(database_url=database_url, data_dir=data_dir,
                           env={"LOG_LEVEL": "info", "METRICS": "on"}).start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            await _delete_under_open_room(server, client)
    finally:
        server.stop()


async def _delete_under_open_room(server: ServerProcess, client: httpx.AsyncClient) -> None:
    author = await dev_user(client, "Author")
    course = await build_course(client, author)
    lesson = course.first_lesson
    editor = await YClient.connect(server.ws_url, lesson, author.token)
    log_before = len(server.log_path.read_bytes()) if server.log_path else 0
    with editor.doc.transaction():
        editor.body.insert(0, "typed just before the lesson is deleted. ")
    await editor.saved()
    response = await client.delete(f"/api/lessons/{lesson}", headers=author.headers)
    assert response.status_code == 204, response.text

    async def closed() -> int | None:
        return editor.close_code

    # The room's access re-check closes the socket (the lesson is gone: 4404), then the room ends.
    assert await eventually(closed, within=15) == 4404
    await editor.close()
    ok(await client.get("/healthz"))
    assert server.log_path is not None
    log_path = server.log_path

    async def room_ended() -> str | None:
        log = log_path.read_bytes()[log_before:].decode(errors="replace")
        failed = "Traceback" in log or "closing room failed" in log
        return log if failed or "lesson is gone" in log else None

    log = await eventually(room_ended, within=15)
    assert "Traceback" not in log and "closing room failed" not in log, log[-3000:]

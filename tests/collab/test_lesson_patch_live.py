"""A REST PATCH of a lesson's text while it is being co-edited lands in the live document."""

from __future__ import annotations

import httpx

from tests.support import ServerProcess, dev_user
from tests.support.collab import YClient, converge


async def test_rest_patch_during_live_editing_is_a_crdt_change(server: ServerProcess,
                                                               client: httpx.AsyncClient) -> None:
    author = await dev_user(client, "Author")
    editor = await dev_user(client, "Editor")
    h = author.headers
    course = (await client.post("/api/courses", headers=h, json={"title": "Live course"})).json()
    unit = (await client.post(f"/api/courses/{course['id']}/units", headers=h, json={"title": "U"})).json()
    created = await client.post(f"/api/units/{unit['id']}/lessons", headers=h, json={
        "title": "Draft", "content_type": "text", "content": {"body": "First line."}})
    assert created.status_code == 201, created.text
    added = await client.post(f"/api/courses/{course['id']}/collaborators", headers=h,
                              json={"clerk_id": editor.clerk_id, "role": "editor"})
    assert added.status_code == 201, added.text
    lesson_id = created.json()["id"]
    live = await YClient.connect(server.ws_url, lesson_id, editor.token)
    live.body.insert(len(str(live.body)), " Typed live.")
    await live.roundtrip()

    before = (await client.get(f"/api/lessons/{lesson_id}", headers=author.headers)).json()
    patched = await client.patch(f"/api/lessons/{lesson_id}", headers=author.headers, json={
        "title": "Final", "content": {"body": "First line. Typed live. Added over REST."}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["title"] == "Final"
    assert body["content"]["body"] == "First line. Typed live. Added over REST."
    assert "<p>First line. Typed live. Added over REST.</p>" in body["content"]["html"]
    assert body["version"] != before["version"]

    # The connected editor sees the change in place; nothing they typed was lost or blanked.
    text = await converge([live])
    assert text == {"title": "Final", "body": "First line. Typed live. Added over REST."}
    # And a newcomer syncing from the server gets the same document.
    late = await YClient.connect(server.ws_url, lesson_id, author.token)
    assert await converge([live, late]) == text
    fetched = (await client.get(f"/api/lessons/{lesson_id}", headers=author.headers)).json()
    assert fetched["title"] == "Final" and fetched["content"]["body"] == text["body"]
    await live.close()
    await late.close()

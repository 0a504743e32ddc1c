"""Collaborators in Chromium: the author's Manage panel lists them with their roles, adds one,
changes a role and removes one; the removed editor's open lesson editor turns read-only, live,
with a message saying why."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support import ServerProcess, dev_user
from tests.support.web import launch, signed_in_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def test_manage_collaborators_and_a_removed_editor_turns_read_only(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    carol = await dev_user(client, f"Carol {uuid.uuid4().hex[:4]}")
    r = await client.post("/api/courses", json={"title": f"Weaving {uuid.uuid4().hex[:6]}"}, headers=alice.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Looms"}, headers=alice.headers)).json()
    lesson = await client.post(f"/api/units/{unit['id']}/lessons", headers=alice.headers,
                               json={"title": "Warp", "content_type": "text", "content": {"body": "Threads run long."}})
    lesson.raise_for_status()
    lesson_id = lesson.json()["id"]
    (await client.post(f"/api/courses/{course_id}/publish", headers=alice.headers)).raise_for_status()
    (await client.post(f"/api/courses/{course_id}/collaborators", json={"clerk_id": bob.clerk_id, "role": "editor"},
                       headers=alice.headers)).raise_for_status()

    async with signed_in_pages(browser, server.base_url, alice, bob) as (author, editor):
        await editor.goto(f"/lessons/{lesson_id}")
        await expect(editor.get_by_test_id("conn-status")).to_have_text("Live", timeout=15_000)
        await expect(editor.get_by_test_id("role")).to_have_text("You can edit")
        body = editor.locator(".body-editor .cm-content")
        await expect(body).to_contain_text("Threads run long.")

        await author.goto(f"/courses/{course_id}")
        panel = author.get_by_test_id("collaborators")
        await expect(panel.get_by_test_id("collaborator")).to_have_count(1)
        await expect(panel.get_by_label("Role of Bob")).to_have_value("editor")

        # add Carol as a viewer through the form
        await author.get_by_label("Collaborator clerk id").fill(carol.clerk_id)
        await author.get_by_label("Role", exact=True).select_option("viewer")
        await author.get_by_role("button", name="Add collaborator").click()
        await expect(panel.get_by_test_id("collaborator")).to_have_count(2)
        await expect(panel.get_by_label(f"Role of {carol.name}")).to_have_value("viewer")

        # change Carol's role; the server has it
        await panel.get_by_label(f"Role of {carol.name}").select_option("editor")
        await expect(author.get_by_test_id("collaborators-status")).to_have_text(f"{carol.name} is now editor.")
        listed = (await client.get(f"/api/courses/{course_id}/collaborators", headers=alice.headers)).json()["items"]
        assert {c["clerk_id"]: c["role"] for c in listed} == {bob.clerk_id: "editor", carol.clerk_id: "editor"}

        # Bob becomes a viewer: his open editor turns read-only and says so
        await panel.get_by_label("Role of Bob").select_option("viewer")
        await expect(editor.get_by_test_id("access-lost")).to_have_text(
            "Your role changed to viewer: the editor is read-only now.", timeout=20_000)
        await expect(editor.get_by_test_id("role")).to_have_text("Read-only")

        # remove Bob (the button asks once more); his open editor closes, saying why
        await expect(panel.get_by_role("button", name="Remove Bob")).to_be_visible()
        remove = panel.get_by_test_id("collaborator").filter(has_text="Bob").get_by_test_id("remove-collaborator")
        await remove.click()
        await expect(remove).to_contain_text("Really remove?")
        await remove.click()
        await expect(panel.get_by_test_id("collaborator")).to_have_count(1)
        alert = editor.get_by_test_id("access-lost")
        await expect(alert).to_have_text("Your editing access to this lesson was removed. The editor is read-only now.",
                                         timeout=20_000)
        await expect(editor.get_by_role("alert")).to_contain_text("access to this lesson was removed")
        await expect(editor.get_by_test_id("role")).to_have_text("Read-only")
        await expect(editor.get_by_test_id("conn-status")).to_have_text("You may not edit this lesson.")
        # typing changes nothing any more
        await body.click()
        await editor.keyboard.type("Sneaky edit")
        await expect(body).to_have_text("Threads run long.")
        lesson_now = (await client.get(f"/api/lessons/{lesson_id}")).json()
        assert "Sneaky" not in lesson_now["content"]["body"]

"""The course outline in Chromium: an editor reorders by drag and drop and by keyboard, moves a
lesson to another unit (menu, keyboard, drag), renames and deletes lessons (with Undo) and units;
a second person sees each change live."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.support import DevUser, ServerProcess, dev_user, eventually
from tests.support.web import launch, screenshot, signed_in_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async for b in launch():
        yield b


async def build_course(client: httpx.AsyncClient, author: DevUser, editor: DevUser) -> dict[str, Any]:
    r = await client.post("/api/courses", json={"title": f"Apiculture {uuid.uuid4().hex[:6]}"}, headers=author.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    ids: dict[str, Any] = {"course": course_id}
    for unit, lessons in (("Basics", ("Hives", "Queens", "Combs")), ("Advanced", ("Swarms",))):
        u = await client.post(f"/api/courses/{course_id}/units", json={"title": unit}, headers=author.headers)
        u.raise_for_status()
        ids[unit] = u.json()["id"]
        for title in lessons:
            lesson = await client.post(f"/api/units/{ids[unit]}/lessons", json={"title": title, "content_type": "text"},
                                       headers=author.headers)
            lesson.raise_for_status()
            ids[title] = lesson.json()["id"]
    (await client.post(f"/api/courses/{course_id}/collaborators", json={"clerk_id": editor.clerk_id, "role": "editor"},
                       headers=author.headers)).raise_for_status()
    return ids


def unit(page: Page, title: str) -> Any:
    return page.get_by_test_id("unit").filter(has=page.get_by_role("heading", name=title, exact=True))


async def expect_lessons(page: Page, unit_title: str, titles: list[str], wait_ms: float = 10_000) -> None:
    await expect(unit(page, unit_title).get_by_test_id("lesson").get_by_role("link")).to_have_text(titles,
                                                                                                  timeout=wait_ms)


async def rest_outline(client: httpx.AsyncClient, course_id: str, user: DevUser) -> list[tuple[str, list[str]]]:
    outline = (await client.get(f"/api/courses/{course_id}/outline", headers=user.headers)).json()
    return [(u["title"], [lesson["title"] for lesson in u["lessons"]]) for u in outline["units"]]


async def test_reorder_move_rename_delete_live(browser: Browser, server: ServerProcess,
                                               client: httpx.AsyncClient) -> None:
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    ids = await build_course(client, alice, bob)
    course = ids["course"]
    async with signed_in_pages(browser, server.base_url, alice, bob) as (mine, theirs):
        for page in (mine, theirs):
            await page.goto(f"/courses/{course}")
            await expect_lessons(page, "Basics", ["Hives", "Queens", "Combs"])
            await expect(page.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)

        # drag "Combs" onto the top half of "Hives": it goes first, for both, and stays after a reload
        combs = unit(mine, "Basics").get_by_test_id("lesson").filter(has_text="Combs")
        hives = unit(mine, "Basics").get_by_test_id("lesson").filter(has_text="Hives")
        await combs.drag_to(hives, target_position={"x": 40, "y": 2})
        await expect_lessons(mine, "Basics", ["Combs", "Hives", "Queens"])
        await expect_lessons(theirs, "Basics", ["Combs", "Hives", "Queens"])
        await theirs.reload()
        await expect_lessons(theirs, "Basics", ["Combs", "Hives", "Queens"])
        assert await rest_outline(client, course, alice) == [("Basics", ["Combs", "Hives", "Queens"]),
                                                             ("Advanced", ["Swarms"])]
        await expect(theirs.locator(".live-dot")).to_have_attribute("data-status", "live", timeout=10_000)

        # keyboard: Move down keeps the focus on the moved lesson; past the end of its unit it
        # moves to the start of the next unit
        down = mine.get_by_role("button", name="Move down “Combs”")
        await down.focus()
        await mine.keyboard.press("Enter")
        await expect_lessons(mine, "Basics", ["Hives", "Combs", "Queens"])
        await expect(down).to_be_focused()
        await mine.keyboard.press("Enter")
        await expect_lessons(mine, "Basics", ["Hives", "Queens", "Combs"])
        await mine.keyboard.press("Enter")
        await expect_lessons(mine, "Basics", ["Hives", "Queens"])
        await expect_lessons(mine, "Advanced", ["Combs", "Swarms"])
        await expect(mine.get_by_test_id("outline-status")).to_have_text("Moved “Combs” to unit “Advanced”.")
        await expect_lessons(theirs, "Advanced", ["Combs", "Swarms"])
        await expect_lessons(theirs, "Basics", ["Hives", "Queens"])

        # a unit moves up by keyboard; a lesson moves with its "Unit" menu
        await mine.get_by_role("button", name="Move up “Advanced”").click()
        await expect(theirs.get_by_test_id("unit").locator("h3")).to_have_text(["Advanced", "Basics"], timeout=10_000)
        await mine.get_by_label("Unit of “Swarms”").select_option(label="Basics")
        await expect_lessons(theirs, "Basics", ["Hives", "Queens", "Swarms"])
        await expect_lessons(theirs, "Advanced", ["Combs"])

        # rename: Escape cancels, Enter saves; the other person sees the new title
        await mine.get_by_role("button", name="Rename “Queens”").click()
        field = mine.get_by_label("New title for “Queens”")
        await field.fill("Nope")
        await field.press("Escape")
        await expect(mine.get_by_role("button", name="Rename “Queens”")).to_be_focused()
        await mine.get_by_role("button", name="Rename “Queens”").click()
        await mine.get_by_label("New title for “Queens”").fill("Queen bees")
        await field.press("Enter")
        await expect_lessons(theirs, "Basics", ["Hives", "Queen bees", "Swarms"])

        # delete, then Undo within the window: nothing was deleted
        await mine.get_by_role("button", name="Delete “Hives”").click()
        await expect_lessons(mine, "Basics", ["Queen bees", "Swarms"])
        toast = mine.get_by_test_id("toast").filter(has_text="Deleted “Hives”")
        await expect(toast).to_be_visible()
        await screenshot(mine, "outline-editor.png")
        await toast.get_by_role("button", name="Undo").click()
        await expect_lessons(mine, "Basics", ["Hives", "Queen bees", "Swarms"])
        assert ("Basics", ["Hives", "Queen bees", "Swarms"]) in await rest_outline(client, course, alice)
        # delete for real: when the undo window closes the DELETE goes and the other page follows
        await mine.get_by_role("button", name="Delete “Swarms”").click()
        await expect_lessons(mine, "Basics", ["Hives", "Queen bees"])
        await expect_lessons(theirs, "Basics", ["Hives", "Queen bees"], wait_ms=20_000)  # 8 s of undo window
        assert ("Basics", ["Hives", "Queen bees"]) in await rest_outline(client, course, alice)
        await expect(mine.get_by_test_id("toast").filter(has_text="Deleted “Swarms”")).to_have_count(0)

        # drag "Queen bees" onto the bottom half of "Combs", in the other unit: it moves there, last
        queen = unit(mine, "Basics").get_by_test_id("lesson").filter(has_text="Queen bees")
        combs = unit(mine, "Advanced").get_by_test_id("lesson").filter(has_text="Combs")
        box = await combs.bounding_box()
        assert box is not None
        await queen.drag_to(combs, target_position={"x": 40, "y": box["height"] - 3})
        await expect_lessons(mine, "Advanced", ["Combs", "Queen bees"])
        await expect_lessons(mine, "Basics", ["Hives"])
        await expect(mine.get_by_test_id("outline-status")).to_have_text("Moved “Queen bees” to unit “Advanced”.")
        await expect_lessons(theirs, "Advanced", ["Combs", "Queen bees"])
        await expect_lessons(theirs, "Basics", ["Hives"])
        assert await rest_outline(client, course, alice) == [("Advanced", ["Combs", "Queen bees"]), ("Basics", ["Hives"])]

        # rename a unit: the other person sees the new heading
        await mine.get_by_role("button", name="Rename “Advanced”").click()
        await mine.get_by_label("New title for “Advanced”").fill("Beyond the basics")
        await mine.get_by_label("New title for “Advanced”").press("Enter")
        await expect(mine.get_by_role("button", name="Rename “Beyond the basics”")).to_be_focused()
        await expect(theirs.get_by_test_id("unit").locator("h3")).to_have_text(["Beyond the basics", "Basics"],
                                                                              timeout=10_000)
        await expect_lessons(theirs, "Beyond the basics", ["Combs", "Queen bees"])

        # delete a unit: hidden at once with its lessons, gone for everyone when the undo window closes
        await mine.get_by_role("button", name="Delete “Basics”").click()
        await expect(mine.get_by_test_id("unit").locator("h3")).to_have_text(["Beyond the basics"])
        unit_toast = mine.get_by_test_id("toast").filter(has_text="Deleted “Basics”")
        await expect(unit_toast).to_contain_text("The unit and its lessons go in a few seconds.")
        await expect(theirs.get_by_test_id("unit").locator("h3")).to_have_text(["Beyond the basics"], timeout=20_000)
        await expect(unit_toast).to_have_count(0)
        assert await rest_outline(client, course, alice) == [("Beyond the basics", ["Combs", "Queen bees"])]
        assert (await client.get(f"/api/lessons/{ids['Hives']}", headers=alice.headers)).status_code == 404


async def test_quick_moves_on_a_slow_network_reach_the_server_in_order(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    """Three quick "Move down"s: two reorders, then a move to the next unit. With each reorder held
    up on the network, the move must still not reach the server first (the late reorder would then
    name a lesson no longer in its unit and be refused)."""
    alice = await dev_user(client, "Alice")
    bob = await dev_user(client, "Bob")
    ids = await build_course(client, alice, bob)
    course = ids["course"]
    async with signed_in_pages(browser, server.base_url, alice) as (mine,):
        async def slow_reorder(route: Route) -> None:
            await asyncio.sleep(0.4)  # a slow link, not a wait for an event
            await route.continue_()

        await mine.route("**/api/units/*/reorder", slow_reorder)
        answered: list[tuple[str, int]] = []
        mine.on("response", lambda r: answered.append((r.request.method, r.status))
                if r.request.method in ("POST", "PATCH") else None)
        await mine.goto(f"/courses/{course}")
        await expect_lessons(mine, "Basics", ["Hives", "Queens", "Combs"])
        down = mine.get_by_role("button", name="Move down “Hives”")
        await down.focus()
        for _ in range(3):
            await mine.keyboard.press("Enter")
        await expect(mine.get_by_test_id("outline-status")).to_have_text("Moved “Hives” to unit “Advanced”.")
        await expect_lessons(mine, "Advanced", ["Hives", "Swarms"])

        async def all_answered() -> bool:
            return len(answered) == 3

        await eventually(all_answered)
        # in the order they were made, each accepted
        assert answered == [("POST", 200), ("POST", 200), ("PATCH", 200)]
        assert await rest_outline(client, course, alice) == [("Basics", ["Queens", "Combs"]),
                                                             ("Advanced", ["Hives", "Swarms"])]

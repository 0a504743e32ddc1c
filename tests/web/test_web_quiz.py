"""Quizzes in Chromium: an author builds, reorders, previews and edits a quiz; a learner fails, then
passes it, and the course outline open in another tab shows the lesson complete without a reload;
the author then removes one question and deletes the quiz."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import ServerProcess, dev_user
from tests.support.web import launch, screenshot, signed_in_pages

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    expect.set_options(timeout=20_000)  # a loaded machine: pages here make several requests each
    async for b in launch():
        yield b
    expect.set_options(timeout=5_000)


async def fill_option(page: Page, question: int, option: int, text: str) -> None:
    await page.get_by_label(f"Question {question}, option {option}", exact=True).fill(text)


async def test_author_builds_a_quiz_and_a_learner_passes_it(
    browser: Browser, server: ServerProcess, client: httpx.AsyncClient
) -> None:
    alice = await dev_user(client, "Alice")
    lena = await dev_user(client, "Lena")
    r = await client.post("/api/courses", json={"title": f"Geography {uuid.uuid4().hex[:6]}"}, headers=alice.headers)
    r.raise_for_status()
    course_id = r.json()["id"]
    unit = (await client.post(f"/api/courses/{course_id}/units", json={"title": "Europe"},
                              headers=alice.headers)).json()
    lessons = []
    for title in ("Capitals", "Rivers"):
        created = await client.post(f"/api/units/{unit['id']}/lessons", json={
            "title": title, "content_type": "text", "content": {"body": f"# {title}\n\nSome facts.\n"}},
            headers=alice.headers)
        created.raise_for_status()
        lessons.append(created.json()["id"])
    lesson = lessons[0]
    (await client.post(f"/api/courses/{course_id}/publish", headers=alice.headers)).raise_for_status()
    (await client.put(f"/api/courses/{course_id}/enrollment", headers=lena.headers)).raise_for_status()

    async with signed_in_pages(browser, server.base_url, alice, lena) as (author, outline):
        # --- the author builds a quiz of three kinds of question
        await author.goto(f"/lessons/{lesson}")
        quizzes = author.get_by_test_id("quizzes")
        await expect(quizzes).to_contain_text("No quiz yet")
        await author.get_by_role("button", name="Add a quiz").click()
        await author.get_by_label("Quiz title").fill("Capitals check")
        await author.get_by_label("Pass mark (%)").fill("60")
        await author.get_by_label("Question 1 prompt").fill("Capital of France?")
        await fill_option(author, 1, 1, "Lyon")
        await fill_option(author, 1, 2, "Paris")
        await author.get_by_label("Correct (option 2 of question 1)").check()

        await author.get_by_role("button", name="Add question").click()
        await author.get_by_label("Question 2 type").select_option("short")
        await author.get_by_label("Question 2 prompt").fill("Capital of Italy?")
        await author.get_by_label("Accepted answers for question 2").fill("Rome\nRoma")

        await author.get_by_role("button", name="Add question").click()
        await author.get_by_label("Question 3 type").select_option("multiple")
        await author.get_by_label("Question 3 prompt").fill("Which are capitals?")
        await fill_option(author, 3, 1, "Berlin")
        await fill_option(author, 3, 2, "Milan")
        await author.get_by_role("button", name="Add option to question 3").click()
        await fill_option(author, 3, 3, "Madrid")
        await author.get_by_label("Correct (option 1 of question 3)").check()
        await author.get_by_label("Correct (option 3 of question 3)").check()
        # the multiple-choice question moves up to second place
        await author.get_by_role("button", name="Move up (question 3)").click()
        await expect(author.get_by_label("Question 2 prompt")).to_have_value("Which are capitals?")
        await expect(author.get_by_role("button", name="Move up (question 2)")).to_be_focused()
        await screenshot(author, "quiz-builder.png")
        await author.get_by_role("button", name="Save quiz").click()

        item = author.get_by_test_id("quiz-item")
        await expect(item).to_contain_text("Capitals check")
        await expect(item).to_contain_text("3 questions · pass mark 60%")
        stored = (await client.get(f"/api/lessons/{lesson}/quizzes", headers=alice.headers)).json()["items"][0]
        assert [(q["kind"], q["prompt"]) for q in stored["questions"]] == [
            ("single", "Capital of France?"), ("multiple", "Which are capitals?"), ("short", "Capital of Italy?")]
        assert stored["questions"][0]["answer"] == 1 and stored["questions"][1]["answer"] == [0, 2]
        assert stored["questions"][2]["accepted"] == ["Rome", "Roma"] and stored["pass_score"] == 0.6

        # preview as a learner sees it: graded in the browser, nothing recorded
        await item.get_by_role("button", name="Preview as a learner").click()
        preview = item.get_by_role("form", name="Preview of Quiz: Capitals check")
        await preview.get_by_role("radio", name="Paris").check()
        await preview.get_by_label("Your answer").fill("  rome ")
        await preview.get_by_role("button", name="Check answers").click()
        await expect(preview.get_by_test_id("quiz-grade")).to_contain_text("Score: 67% (2 of 3 correct) — passed")
        await expect(preview.get_by_test_id("question-result")).to_have_text(["✓ Correct", "✗ Incorrect", "✓ Correct"])

        # edit: rename it
        await item.get_by_role("button", name="Edit").click()
        await author.get_by_label("Quiz title").fill("Capitals of Europe")
        await author.get_by_role("button", name="Save quiz").click()
        await expect(item.get_by_role("heading", name="Capitals of Europe")).to_be_visible()

        # --- the learner: the outline in one tab, the lesson in another
        await outline.goto(f"/courses/{course_id}")
        box = outline.locator(f'li.lesson[data-id="{lesson}"] input[type=checkbox]')
        await expect(box).not_to_be_checked()
        learner = await outline.context.new_page()
        await learner.goto(f"/lessons/{lesson}")
        form = learner.get_by_role("form", name="Quiz: Capitals of Europe")
        await expect(form.get_by_role("group")).to_have_count(3)
        assert "answer" not in (await client.get(f"/api/quizzes/{stored['id']}", headers=lena.headers)).text
        # a first attempt fails, with each question's result
        await form.get_by_role("radio", name="Lyon").check()
        await form.get_by_role("checkbox", name="Berlin").check()
        await form.get_by_label("Your answer").fill("Milano")
        await form.get_by_role("button", name="Submit answers").click()
        await expect(form.get_by_test_id("quiz-grade")).to_contain_text("Score: 0% (0 of 3 correct) — not passed")
        await expect(form.get_by_test_id("question-result")).to_have_text(["✗ Incorrect"] * 3)
        await expect(box).not_to_be_checked()
        # then passes
        await form.get_by_role("button", name="Try again").click()
        await form.get_by_role("radio", name="Paris").check()
        await form.get_by_role("checkbox", name="Berlin").check()
        await form.get_by_role("checkbox", name="Madrid").check()
        await form.get_by_label("Your answer").fill("ROMA")
        await form.get_by_role("button", name="Submit answers").click()
        await expect(form.get_by_test_id("quiz-grade")).to_contain_text("Score: 100% (3 of 3 correct) — passed")
        await expect(form).to_contain_text("Lesson complete. Course progress: 50%.")
        await expect(learner.get_by_role("button", name="Mark lesson complete")).to_be_disabled()
        await screenshot(learner, "quiz-passed.png")
        # the outline tab shows it without a reload (progress.updated on user:me over /ws)
        await expect(box).to_be_checked()
        await expect(outline.get_by_text("50% complete")).to_be_visible()
        progress = (await client.get(f"/api/courses/{course_id}/progress", headers=lena.headers)).json()
        assert progress["completed_lessons"] == 1 and progress["progress"] == 50
        # and after navigation too
        await learner.goto(f"/courses/{course_id}")
        await expect(learner.locator(f'li.lesson[data-id="{lesson}"] input[type=checkbox]')).to_be_checked()

        # --- the author removes one question (the multiple-choice one, second) and saves
        await item.get_by_role("button", name="Edit").click()
        builder = author.get_by_role("form", name="Edit quiz Capitals of Europe")
        await expect(builder.get_by_test_id("question-editor")).to_have_count(3)
        await builder.get_by_role("button", name="Remove question 2").click()
        await expect(builder.get_by_test_id("question-editor")).to_have_count(2)
        await expect(builder.get_by_role("status")).to_have_text("Question 2 removed.")
        await expect(builder.get_by_role("button", name="Add question")).to_be_focused()
        # the short-answer question moved up into second place
        await expect(author.get_by_label("Question 2 prompt")).to_have_value("Capital of Italy?")
        await expect(builder.get_by_role("button", name="Remove question 3")).to_have_count(0)
        await builder.get_by_role("button", name="Save quiz").click()
        await expect(item).to_contain_text("2 questions · pass mark 60%")
        stored = (await client.get(f"/api/lessons/{lesson}/quizzes", headers=alice.headers)).json()["items"][0]
        assert [(q["kind"], q["prompt"]) for q in stored["questions"]] == [
            ("single", "Capital of France?"), ("short", "Capital of Italy?")]
        # the learner's next visit has the two questions left
        await learner.goto(f"/lessons/{lesson}")
        await expect(learner.get_by_role("form", name="Quiz: Capitals of Europe").get_by_role("group")).to_have_count(2)

        # --- the author deletes the quiz
        await item.get_by_role("button", name="Delete").click()
        await item.get_by_role("button", name="Yes, delete").click()
        await expect(quizzes).to_contain_text("No quiz yet")
        assert (await client.get(f"/api/lessons/{lesson}/quizzes", headers=alice.headers)).json()["items"] == []

"""A seeded server world for schemathesis: real rows behind the path ids, four kinds of caller.

Path ids drawn at random are almost always unknown UUIDs, so a fuzzer that only generates them
exercises little more than the 404 path. :func:`seed` creates one of each object through the REST
API (as a user would) and :class:`World` hands schemathesis those ids, per resource, next to the
generated ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

ROLES = ("author", "learner", "stranger", "anonymous")

# The resource a path's ``{id}`` names is the collection segment just before it.
_RESOURCE_OF_ID = re.compile(r"/api/((?:[a-z-]+/)*?[a-z-]+)/\{id\}")


@dataclass
class World:
    base_url: str
    tokens: dict[str, str]  # role -> bearer token ("anonymous" has none)
    ids: dict[str, list[str]] = field(default_factory=dict)  # resource ("courses", "forum/posts", …) -> ids

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def pool(self, path: str, name: str) -> list[str]:
        """Real values for the path parameter ``name`` of ``path`` (empty: let schemathesis generate)."""
        if name == "vid":
            return self.ids.get("versions", [])
        if name == "clerk_id":
            return self.ids.get("clerk_ids", [])
        match = _RESOURCE_OF_ID.search(path)
        return self.ids.get(match.group(1), []) if match else []


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise AssertionError(f"seeding {response.request.method} {response.request.url} -> "
                             f"{response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def seed(base_url: str, *, tag: str = "fuzz") -> World:
    """Users of each role and one of every object, created over REST."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        tokens: dict[str, str] = {}
        clerk: dict[str, str] = {}
        for role in ("author", "learner", "stranger", "viewer"):
            clerk[role] = f"user_{tag}_{role}"
            tokens[role] = _ok(http.post("/api/dev/token", json={"sub": clerk[role], "name": role.title()}))["token"]
            _ok(http.get("/api/me", headers={"Authorization": f"Bearer {tokens[role]}"}))
        world = World(base_url=base_url, tokens={r: tokens[r] for r in ("author", "learner", "stranger")})

        def call(role: str, method: str, url: str, **kw: Any) -> Any:
            return _ok(http.request(method, url, headers={"Authorization": f"Bearer {tokens[role]}"}, **kw))

        def add(resource: str, value: str) -> str:
            world.ids.setdefault(resource, []).append(value)
            return value

        courses: list[str] = []
        lessons: list[str] = []
        for published in (True, False):
            course = add("courses", call("author", "POST", "/api/courses", json={
                "title": f"Fuzz course {'public' if published else 'draft'}", "description": "Seeded for fuzzing",
                "difficulty": "beginner"})["id"])
            unit = add("units", call("author", "POST", f"/api/courses/{course}/units", json={"title": "Unit"})["id"])
            lesson = add("lessons", call("author", "POST", f"/api/units/{unit}/lessons", json={
                "title": "Lesson", "content_type": "text",
                "content": {"body": "# Hello\n\nSome *Markdown* with a [link](https://example.com)."}})["id"])
            courses.append(course)
            lessons.append(lesson)
            if published:
                call("author", "POST", f"/api/courses/{course}/publish")
        course, lesson = courses[0], lessons[0]
        call("author", "POST", f"/api/courses/{course}/collaborators", json={"clerk_id": clerk["viewer"],
                                                                            "role": "viewer"})
        world.ids["clerk_ids"] = [clerk["viewer"], clerk["learner"]]
        call("learner", "PUT", f"/api/courses/{course}/enrollment")
        post = add("forum/posts", call("learner", "POST", f"/api/courses/{course}/forum/posts", json={
            "title": "A question", "content": "How does this work?", "lesson_id": lesson})["id"])
        add("forum/posts", call("author", "POST", f"/api/courses/{course}/forum/posts", json={
            "title": "Announcement", "content": "Welcome"})["id"])
        reply = add("forum/replies", call("author", "POST", f"/api/forum/posts/{post}/replies",
                                          json={"content": "Like this."})["id"])
        add("forum/replies", call("learner", "POST", f"/api/forum/posts/{post}/replies",
                                  json={"content": "Thanks", "parent_reply_id": reply})["id"])
        add("feedback", call("learner", "POST", f"/api/courses/{course}/feedback",
                             json={"rating": 4, "comment": "Good"})["id"])
        add("quizzes", call("author", "POST", f"/api/lessons/{lesson}/quizzes", json={
            "title": "Check", "pass_score": 0.5, "questions": [
                {"id": "q1", "kind": "single", "prompt": "2+2?", "options": ["3", "4"], "answer": 1},
                {"id": "q2", "kind": "short", "prompt": "Capital of France?", "accepted": ["Paris"]}]})["id"])
        version = call("learner", "GET", f"/api/lessons/{lesson}")["version"]
        add("suggested-edits", call("learner", "POST", f"/api/lessons/{lesson}/suggested-edits", json={
            "field": "body", "changes": [{"index": 0, "delete": 0, "insert": "Hi. "}], "base_version": version,
            "comment": "Friendlier"})["id"])
        add("media", call("author", "POST", f"/api/lessons/{lesson}/media",
                          json={"url": "https://example.com/clip.mp4"})["id"])
        for role in ("learner", "author"):
            fset = add("flashcard-sets", call(role, "POST", "/api/flashcard-sets",
                                              json={"title": f"{role} cards", "is_public": role == "author"})["id"])
            add("flashcards", call(role, "POST", f"/api/flashcard-sets/{fset}/cards",
                                   json={"front": "front", "back": "back"})["id"])
        add("me/goals", call("learner", "POST", "/api/me/goals", json={
            "title": "Study", "target_type": "lessons", "target_value": 3, "period": "weekly"})["id"])
        for item in call("author", "GET", "/api/notifications")["items"]:
            add("notifications", item["id"])
        for item in call("author", "GET", f"/api/lessons/{lesson}/versions")["items"]:
            add("versions", item["id"])
        return world

"""Demo data (``python -m server demo``): a course to browse, a draft to co-edit, a thread to join."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import pool, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Tag, Unit
from server.db import make_engine, make_sessionmaker
from server.feedback.models import CourseFeedback
from server.flashcards.models import Flashcard, FlashcardSet
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.learning.models import Quiz, UserCourse
from server.markdown import render_markdown
from server.users.models import User

DEMO_COURSE = "Writing Clear Technical Prose"

USERS = [
    ("user_alice", "Alice Author", "alice@example.com"),
    ("user_bob", "Bob Editor", "bob@example.com"),
    ("user_carol", "Carol Learner", "carol@example.com"),
    ("user_dan", "Dan Learner", "dan@example.com"),
]
LANGUAGES = [("en", "English"), ("de", "German"), ("fr", "French"), ("es", "Spanish")]
TAGS = ["writing", "documentation", "python", "collaboration", "beginners"]


def _content(content_type: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"body": body, "html": render_markdown(body), **extra}


async def _load(session: AsyncSession) -> str:
    exists = await session.execute(select(Course.id).where(Course.title == DEMO_COURSE))
    if exists.first() is not None:
        return "demo data already present"
    await session.execute(insert(User).values(
        [{"clerk_id": c, "name": n, "email": e} for c, n, e in USERS]).on_conflict_do_nothing())
    await session.execute(insert(Language).values(
        [{"code": c, "name": n} for c, n in LANGUAGES]).on_conflict_do_nothing())
    await session.execute(insert(Tag).values([{"name": t} for t in TAGS]).on_conflict_do_nothing())
    english = (await session.execute(select(Language).where(Language.code == "en"))).scalar_one()
    tags = {t.name: t for t in (await session.execute(select(Tag))).scalars()}

    now = datetime.now(UTC)
    course = Course(author_id="user_alice", title=DEMO_COURSE, difficulty="beginner",
                    description="Say what you mean in docs, READMEs and lessons: structure, "
                                "plain words, examples that run.",
                    language_id=english.id, is_published=True, published_at=now)
    draft = Course(author_id="user_alice", title="Live Collaboration Basics (draft)", difficulty="intermediate",
                   description="A draft co-written by Alice and Bob.", language_id=english.id)
    session.add_all([course, draft])
    await session.flush()
    session.add_all([CourseTag(course_id=course.id, tag_id=tags[t].id) for t in ("writing", "documentation")])
    session.add(CourseTag(course_id=draft.id, tag_id=tags["collaboration"].id))
    session.add(Collaborator(course_id=draft.id, user_id="user_bob", role="editor"))
    session.add(Collaborator(course_id=course.id, user_id="user_bob", role="editor"))

    unit1 = Unit(course_id=course.id, title="Foundations", position=0)
    unit2 = Unit(course_id=course.id, title="Practice", position=1)
    dunit = Unit(course_id=draft.id, title="Getting started", position=0)
    session.add_all([unit1, unit2, dunit])
    await session.flush()
    lessons = [
        Lesson(unit_id=unit1.id, position=0, title="Know your reader", content_type="text",
               content=_content("text", "# Know your reader\n\nWrite for **one** person. Ask:\n\n"
                                "- What do they know already?\n- What do they need to *do* next?\n")),
        Lesson(unit_id=unit1.id, position=1, title="Plain words (video)", content_type="video",
               content=_content("video", "Transcript: short words beat long ones.",
                                video_url="https://example.com/plain-words.mp4", duration_s=312)),
        Lesson(unit_id=unit2.id, position=0, title="Reading aloud (audio)", content_type="audio",
               content=_content("audio", "Transcript: read your draft aloud and listen for stumbles.",
                                audio_url="https://example.com/read-aloud.mp3", duration_s=185)),
        Lesson(unit_id=unit2.id, position=1, title="Rewrite a paragraph", content_type="exercise",
               content=_content("exercise", "Rewrite the paragraph below in half the words.\n\n"
                                "> It is important to note that in order to ...",
                                instructions="Submit your rewrite in the forum thread.")),
    ]
    dlesson = Lesson(unit_id=dunit.id, position=0, title="What is a CRDT?", content_type="text",
                     content=_content("text", "A CRDT lets two people edit at once and still agree.\n"))
    session.add_all([*lessons, dlesson])
    await session.flush()
    session.add(Quiz(lesson_id=lessons[0].id, title="Check yourself", pass_score=0.5, questions=[
        {"id": "q1", "kind": "single", "prompt": "Who should you write for?",
         "options": ["Everyone", "One reader", "Yourself"], "answer": 1},
        {"id": "q2", "kind": "multiple", "prompt": "Which help clarity?",
         "options": ["Short words", "Jargon", "Examples"], "answer": [0, 2]},
        {"id": "q3", "kind": "short", "prompt": "One word: what beats long words?", "accepted": ["short"]},
    ]))
    for learner in ("user_carol", "user_dan"):
        session.add(UserCourse(user_id=learner, course_id=course.id, progress=0))
    session.add(CourseFeedback(course_id=course.id, user_id="user_carol", rating=5,
                               comment="Short, practical, and the exercises help."))

    post = ForumPost(course_id=course.id, lesson_id=lessons[0].id, user_id="user_carol",
                     title="How do I find out what my reader knows?",
                     content="Any tricks for guessing the reader's background?",
                     html=render_markdown("Any tricks for guessing the reader's background?"))
    session.add(post)
    await session.flush()
    r1 = ForumReply(post_id=post.id, user_id="user_alice", content="Ask three of them. Seriously.",
                    html=render_markdown("Ask three of them. Seriously."))
    session.add(r1)
    await session.flush()
    r2 = ForumReply(post_id=post.id, user_id="user_dan", parent_reply_id=r1.id,
                    content="I did this last week and it changed my intro completely.",
                    html=render_markdown("I did this last week and it changed my intro completely."))
    session.add(r2)
    await session.flush()
    session.add(ForumReply(post_id=post.id, user_id="user_carol", parent_reply_id=r2.id,
                           content="Thanks both!", html=render_markdown("Thanks both!")))
    session.add_all([ForumPostLike(post_id=post.id, user_id="user_dan"),
                     ForumReplyLike(reply_id=r1.id, user_id="user_carol"),
                     ForumReplyLike(reply_id=r1.id, user_id="user_dan")])

    cards = FlashcardSet(user_id="user_carol", course_id=course.id, title="Plain-word swaps", is_public=True)
    session.add(cards)
    await session.flush()
    swaps = [("utilise", "use"), ("in order to", "to"), ("commence", "start"), ("approximately", "about")]
    session.add_all([Flashcard(set_id=cards.id, front=f, back=b, front_html=render_markdown(f),
                               back_html=render_markdown(b), position=i) for i, (f, b) in enumerate(swaps)])
    return (f"demo data loaded: course {course.id} (published), draft {draft.id}, "
            f"thread {post.id}; users " + ", ".join(c for c, _, _ in USERS))


async def load_demo(database_url: str) -> str:
    engine = make_engine(database_url, poolclass=pool.NullPool)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await _load(session)
    finally:
        await engine.dispose()

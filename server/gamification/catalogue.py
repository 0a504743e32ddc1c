"""The default achievement catalogue (§9), seeded by migrations and ``python -m server migrate``."""

from __future__ import annotations

from typing import Any

DEFAULT_ACHIEVEMENTS: tuple[dict[str, Any], ...] = (
    {"name": "First lesson", "description": "Complete your first lesson.",
     "requirement": {"lessons_completed": 1}, "icon": "📘"},
    {"name": "Ten lessons", "description": "Complete ten lessons.",
     "requirement": {"lessons_completed": 10}, "icon": "📚"},
    {"name": "First course", "description": "Complete a whole course.",
     "requirement": {"courses_completed": 1}, "icon": "🎓"},
    {"name": "Week streak", "description": "Learn seven days in a row.",
     "requirement": {"streak_days": 7}, "icon": "🔥"},
    {"name": "Month streak", "description": "Learn thirty days in a row.",
     "requirement": {"streak_days": 30}, "icon": "🌋"},
    {"name": "First post", "description": "Start or join a discussion.",
     "requirement": {"forum_posts": 1}, "icon": "💬"},
    {"name": "Liked", "description": "Receive ten likes on your posts and replies.",
     "requirement": {"likes_received": 10}, "icon": "❤️"},
    {"name": "Card shark", "description": "Review one hundred flashcards.",
     "requirement": {"flashcards_reviewed": 100}, "icon": "🃏"},
)

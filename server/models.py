"""The schema registry: every domain's models, imported once so ``metadata`` holds all tables.

For Alembic (``migrations/env.py``) and the schema test; the app itself never needs it (each
module imports the models it queries). ``server.db`` stays below every domain: add a domain's
models module here, not there.
"""

from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Tag, Unit
from server.db import Base
from server.editing.models import LessonSnapshot, LessonUpdate, LessonVersion, SuggestedEdit
from server.feedback.models import CourseFeedback, FeedbackUpvote
from server.flashcards.models import Flashcard, FlashcardReview, FlashcardSet, UserFlashcardProgress
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.gamification.models import Achievement, LearningGoal, LoginDay, UserAchievement, UserStreak
from server.learning.models import Quiz, QuizAttempt, UserCourse, UserProgress
from server.media.models import Media
from server.notifications.models import Notification
from server.outbox.models import EventChannel, OutboxEvent
from server.users.models import User, WebhookDelivery

metadata = Base.metadata

__all__ = [
    "Achievement", "Collaborator", "Course", "CourseFeedback", "CourseTag", "EventChannel", "FeedbackUpvote",
    "Flashcard", "FlashcardReview", "FlashcardSet", "ForumPost", "ForumPostLike", "ForumReply",
    "ForumReplyLike", "Language", "LearningGoal", "Lesson", "LessonSnapshot", "LessonUpdate",
    "LessonVersion", "LoginDay", "Media", "Notification", "OutboxEvent", "Quiz", "QuizAttempt",
    "SuggestedEdit", "Tag", "Unit", "User", "UserAchievement", "UserCourse", "UserFlashcardProgress",
    "UserProgress", "UserStreak", "WebhookDelivery", "metadata",
]

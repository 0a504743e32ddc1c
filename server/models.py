"""Every model, imported once so ``Base.metadata`` holds the whole schema."""

from server.catalog.models import Collaborator, Course, CourseTag, Language, Lesson, Media, Quiz, Tag, Unit
from server.editing.models import LessonSnapshot, LessonUpdate, LessonVersion, SuggestedEdit
from server.feedback.models import CourseFeedback, FeedbackUpvote
from server.flashcards.models import Flashcard, FlashcardReview, FlashcardSet, UserFlashcardProgress
from server.forum.models import ForumPost, ForumPostLike, ForumReply, ForumReplyLike
from server.gamification.models import Achievement, LearningGoal, LoginDay, UserAchievement, UserStreak
from server.learning.models import QuizAttempt, UserCourse, UserProgress
from server.notifications.models import Notification
from server.outbox.models import EventChannel, OutboxEvent
from server.users.models import User, WebhookDelivery

__all__ = [
    "Achievement", "Collaborator", "Course", "CourseFeedback", "CourseTag", "EventChannel", "FeedbackUpvote",
    "Flashcard", "FlashcardReview", "FlashcardSet", "ForumPost", "ForumPostLike", "ForumReply",
    "ForumReplyLike", "Language", "LearningGoal", "Lesson", "LessonSnapshot", "LessonUpdate",
    "LessonVersion", "LoginDay", "Media", "Notification", "OutboxEvent", "Quiz", "QuizAttempt",
    "SuggestedEdit", "Tag", "Unit", "User", "UserAchievement", "UserCourse", "UserFlashcardProgress",
    "UserProgress", "UserStreak", "WebhookDelivery",
]

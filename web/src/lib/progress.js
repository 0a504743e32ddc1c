// Lesson progress, live: the server tells every tab and device of the learner with
// `progress.updated` on `user:me` (docs/API.md §7) after a lesson status changes (a passed quiz,
// "Mark complete"); the tab that made the change also announces it at once, before the event.
import { live } from './live.js'
import { auth } from './auth.js'

const listeners = new Set()

/** Tell this tab's listeners now: `{courseId, lessonId, status, progress}`. */
export function announceProgress (change) {
  for (const fn of listeners) fn(change)
}

/** Call fn({courseId, lessonId, status, progress}) for each change of `courseId`; returns the unsubscribe. */
export function onProgress (courseId, fn) {
  const wrapped = (c) => { if (c && String(c.courseId) === String(courseId)) fn(c) }
  listeners.add(wrapped)
  const unsubscribe = auth.signedIn
    ? live.subscribe('user:me', null, (event, data) => {
      if (event === 'progress.updated') wrapped({ courseId: data.course_id, lessonId: data.lesson_id, status: data.status, progress: data.progress })
    })
    : () => {}
  return () => { listeners.delete(wrapped); unsubscribe() }
}

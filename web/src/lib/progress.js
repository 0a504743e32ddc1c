// Lesson progress shared between this browser's tabs. The server has no live event for progress
// (docs/API.md §7 lists none), so a tab that completes a lesson (a passed quiz, "Mark complete")
// tells the others through a BroadcastChannel; a course outline open in another tab updates at once.
// Another device sees it on its next load of the outline.

const NAME = 'scriptorium.progress'
const listeners = new Set()
let channel = null

function open () {
  if (channel || typeof BroadcastChannel === 'undefined') return channel
  channel = new BroadcastChannel(NAME)
  channel.onmessage = (e) => { for (const fn of listeners) fn(e.data) }
  return channel
}

/** Tell this tab and the others: `{courseId, lessonId, status, progress}`. */
export function announceProgress (change) {
  for (const fn of listeners) fn(change)
  open()?.postMessage(change)
}

/** Call fn({courseId, lessonId, status, progress}) for each change of `courseId`; returns the unsubscribe. */
export function onProgress (courseId, fn) {
  open()
  const wrapped = (c) => { if (c && String(c.courseId) === String(courseId)) fn(c) }
  listeners.add(wrapped)
  return () => listeners.delete(wrapped)
}

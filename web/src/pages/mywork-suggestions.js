// A suggester's view of their own suggested edits: what, where, when, status, and Withdraw while
// open. Used by the lesson page (your suggestions on this lesson) and the My work page.
import { h, clear } from '../lib/dom.js'
import { get, post } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { timeAgo, fmtTime } from '../lib/format.js'

const STATUS = { open: 'Open', accepted: 'Accepted', rejected: 'Rejected', withdrawn: 'Withdrawn' }

export function changesOf (s) {
  return (s.changes || []).map((c) => h('div.change', c.delete ? h('del', c.original ?? `${c.delete} characters`) : null, c.insert ? h('ins', c.insert) : null))
}

/** One of my suggestions; `withLesson`: name its lesson and course (lists across lessons). */
export function mySuggestionItem (s, { withLesson = false, onWithdrawn } = {}) {
  const out = h('p.result', { role: 'status', 'aria-live': 'polite' })
  const status = h('span.pill.status', { dataset: { status: s.status }, 'data-testid': 'suggestion-status' }, STATUS[s.status] || s.status)
  const withdraw = s.status === 'open'
    ? h('button.small', {
      type: 'button',
      'data-testid': 'withdraw',
      onclick: async (e) => {
        e.currentTarget.disabled = true
        try {
          const r = await post(`/suggested-edits/${s.id}/withdraw`)
          status.textContent = STATUS[r.status]; status.dataset.status = r.status
          out.textContent = 'Suggestion withdrawn.'
          e.target.remove()
          onWithdrawn?.(r)
        } catch (err) { e.target.disabled = false; out.textContent = errorText(err) }
      }
    }, 'Withdraw')
    : null
  return h('li.suggestion', { 'data-testid': 'my-suggestion', dataset: { id: String(s.id) } },
    h('div.row', status,
      withLesson ? h('a', { href: `/lessons/${s.lesson_id}` }, s.lesson_title) : null,
      withLesson ? h('small.muted', `in ${s.course_title}`) : null,
      h('small.muted', h('time', { datetime: s.created_at, title: fmtTime(s.created_at) }, `${s.field || 'body'} · ${timeAgo(s.created_at)}`))),
    changesOf(s), s.comment ? h('p', s.comment) : null, withdraw, out)
}

/** The lesson page's box for a suggester: their suggestions on this lesson that are still open. */
export function mySuggestionsBox (lessonId) {
  const list = h('ul.suggestions', { 'data-testid': 'my-suggestions' })
  const box = h('section.box', { 'aria-labelledby': 'ms-h', hidden: true }, h('h2#ms-h', 'Your open suggestions'), list)
  const load = async () => {
    try {
      const page = await get(`/lessons/${lessonId}/suggested-edits?status=open&limit=50`)
      clear(list, page.items.map((s) => mySuggestionItem(s)))
      box.hidden = !page.items.length // shown once there is one to follow
    } catch (e) { clear(list, h('li.error', errorText(e))) }
  }
  box.reload = load
  load()
  return box
}

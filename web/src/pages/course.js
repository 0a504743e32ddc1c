// A course: outline with progress (pages/outline.js), enrolment, staff tools (collaborators:
// pages/collaborators.js), feedback and the forum's thread list and search (pages/forum.js).
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, put, del, getAll } from '../lib/api.js'
import { toast, showError } from '../lib/toast.js'
import { stars, tagName } from '../lib/format.js'
import { onLeave, render } from '../lib/router.js'
import { outlineView } from './outline.js'
import { collaboratorsPanel } from './collaborators.js'
import { renderForum } from './forum.js'
import { onProgress } from '../lib/progress.js'

export default async function coursePage (main, id) {
  const [outline, access] = await Promise.all([get(`/courses/${id}/outline`), get(`/courses/${id}/access`).catch(() => ({ role: 'anonymous' }))])
  const course = outline.course
  const canEdit = !!access.can_edit
  const enrolled = access.role === 'learner' || !!course.enrolled || outline.units.some((u) => u.lessons.some((l) => l.status))
  const progressBar = h('progress', { max: 100, value: 0, 'aria-label': 'Course progress' })
  const progressText = h('span', '')
  const setProgress = (p) => { progressBar.value = Number(p) || 0; progressText.textContent = `${Math.round(Number(p) || 0)}% complete` }
  if (enrolled) get(`/courses/${id}/progress`).then((p) => setProgress(p.progress)).catch(() => {})
  let isEnrolled = enrolled
  const enrollBtn = h('button.primary', { type: 'button' })
  const setEnroll = () => { enrollBtn.textContent = isEnrolled ? 'Leave course' : 'Enroll'; enrollBtn.setAttribute('aria-pressed', String(isEnrolled)) }
  setEnroll()
  enrollBtn.onclick = async () => {
    try {
      if (isEnrolled) await del(`/courses/${id}/enrollment`); else await put(`/courses/${id}/enrollment`, {})
      isEnrolled = !isEnrolled; setEnroll(); render()
    } catch (e) { showError(e) }
  }

  // the outline (editing tools for editors, live for everyone signed in): pages/outline.js
  const outlineBox = outlineView(id, outline, { canEdit, enrolled: isEnrolled, onProgress: setProgress })
  onLeave(outlineBox.dispose)
  onLeave(onProgress(id, (c) => { // a lesson completed elsewhere (a passed quiz, another tab or device): lib/progress.js
    const li = outlineBox.el.querySelector(`li.lesson[data-id="${c.lessonId}"]`)
    if (li) { const done = c.status === 'completed'; li.classList.toggle('done', done); const cb = li.querySelector('input[type=checkbox]'); if (cb) cb.checked = done }
    if (c.progress !== null && c.progress !== undefined) setProgress(c.progress)
  }))

  const staff = canEdit ? h('section.box', h('h2', 'Manage'),
    h('p', course.is_published ? 'Published.' : 'Draft — only you and collaborators see it.'),
    h('button', {
      type: 'button',
      onclick: async () => { try { await post(`/courses/${id}/${course.is_published ? 'unpublish' : 'publish'}`); render() } catch (e) { showError(e) } }
    }, course.is_published ? 'Unpublish' : 'Publish'),
    access.can_manage ? collaboratorsPanel(id) : null) : null
  const library = canEdit ? h('div') : null
  if (library) import('./media.js').then((m) => { if (library.isConnected) library.append(m.mediaLibrary(id)) }).catch(() => {})

  const forum = h('section.box', { 'aria-labelledby': 'forum-h' })
  const feedback = h('section.box', { 'aria-labelledby': 'fb-h' })
  clear(main,
    h('div.page-head', h('div', h('h1', course.title), h('p', course.description || ''),
      h('div.meta', stars(course.rating_avg, course.rating_count), h('span', `${course.enrolled_count ?? 0} enrolled`), (course.tags || []).map((t) => h('span.pill', tagName(t))))),
    auth.signedIn && !canEdit ? enrollBtn : null),
    isEnrolled ? h('div.progress', progressBar, progressText) : null,
    h('div.cols',
      h('section.box', h('h2', 'Outline'), outlineBox.el),
      h('div', staff, library, feedback, forum)))
  await Promise.all([renderFeedback(feedback, id, isEnrolled), renderForum(forum, id)])
  outlineBox.goLive() // after the forum's subscription to course:<id>, which carries its since
}

async function renderFeedback (box, courseId, enrolled) {
  const list = h('ul.feedback')
  const { items } = await getAll(`/courses/${courseId}/feedback?limit=50`, 2).catch(() => ({ items: [] }))
  for (const f of items) {
    let count = f.upvotes
    let mine = f.upvoted_by_me
    const btn = h('button.small', { type: 'button', 'aria-pressed': String(mine) })
    // named "Upvote 3": what it does (for screen readers only) and the count it shows (WCAG 2.5.3)
    const label = () => { btn.replaceChildren(h('span.sr-only', 'Upvote'), h('span', { 'aria-hidden': 'true' }, '▲'), ` ${count}`); btn.setAttribute('aria-pressed', String(mine)) }
    label()
    btn.onclick = async () => {
      try {
        const r = mine ? await del(`/feedback/${f.id}/upvote`) : await put(`/feedback/${f.id}/upvote`, {})
        count = r.upvotes; mine = r.upvoted_by_me; label()
      } catch (e) { showError(e) }
    }
    list.append(h('li', h('span.rating', h('span', { 'aria-hidden': 'true' }, '★'.repeat(f.rating) + '☆'.repeat(5 - f.rating)), h('span.sr-only', `${f.rating} out of 5 stars`)), ' ', h('strong', f.author.name || f.author.clerk_id), h('p', f.comment || ''), btn))
  }
  if (!items.length) list.append(h('li.muted', 'No feedback yet.'))
  let form = null
  if (enrolled) {
    const fs = h('fieldset.stars', h('legend', 'Your rating'),
      [1, 2, 3, 4, 5].map((n) => h('label', h('input', { type: 'radio', name: 'rating', value: n, required: true }), ` ${n}★`)))
    const comment = h('textarea', { name: 'comment', rows: 2, 'aria-label': 'Comment', placeholder: 'What did you think?' })
    form = h('form.stack', {
      onsubmit: async (e) => {
        e.preventDefault()
        const rating = Number(form.querySelector('input[name=rating]:checked')?.value)
        try { await post(`/courses/${courseId}/feedback`, { rating, comment: comment.value }); toast('Thanks for your feedback'); renderFeedback(box, courseId, enrolled) } catch (err) { showError(err) }
      }
    }, fs, comment, h('button', { type: 'submit' }, 'Send feedback'))
  }
  clear(box, h('h2#fb-h', 'Feedback'), list, form)
}

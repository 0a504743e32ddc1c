// A course: outline with progress, enrolment, staff tools, feedback and the forum's thread list.
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, put, del, getAll } from '../lib/api.js'
import { live } from '../lib/live.js'
import { toast, showError } from '../lib/toast.js'
import { stars, authorOf, tagName } from '../lib/format.js'
import { navigate, onLeave, render } from '../lib/router.js'

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

  const outlineEl = h('ol.outline')
  for (const unit of outline.units) {
    const lessons = h('ol.lessons')
    for (const l of unit.lessons) {
      const done = l.status === 'completed'
      const box = h('input', { type: 'checkbox', checked: done, 'aria-label': `Mark “${l.title}” complete`, disabled: !isEnrolled })
      box.onchange = async () => {
        try {
          const r = await put(`/lessons/${l.id}/progress`, { status: box.checked ? 'completed' : 'in_progress' })
          setProgress(r.progress)
        } catch (e) { box.checked = !box.checked; showError(e) }
      }
      lessons.append(h('li', { class: done ? 'done' : '' }, box, ' ', h('a', { href: `/lessons/${l.id}` }, l.title), h('small.muted', ` ${l.content_type}`)))
    }
    if (canEdit) lessons.append(h('li', addLessonForm(unit.id)))
    outlineEl.append(h('li', h('h3', unit.title), lessons))
  }
  if (canEdit) outlineEl.append(h('li', addUnitForm(id)))

  const staff = canEdit ? h('section.box', h('h2', 'Manage'),
    h('p', course.is_published ? 'Published.' : 'Draft — only you and collaborators see it.'),
    h('button', {
      type: 'button',
      onclick: async () => { try { await post(`/courses/${id}/${course.is_published ? 'unpublish' : 'publish'}`); render() } catch (e) { showError(e) } }
    }, course.is_published ? 'Unpublish' : 'Publish'),
    access.can_manage ? collaboratorForm(id) : null) : null

  const forum = h('section.box', { 'aria-labelledby': 'forum-h' })
  const feedback = h('section.box', { 'aria-labelledby': 'fb-h' })
  clear(main,
    h('div.page-head', h('div', h('h1', course.title), h('p', course.description || ''),
      h('div.meta', stars(course.rating_avg, course.rating_count), h('span', `${course.enrolled_count ?? 0} enrolled`), (course.tags || []).map((t) => h('span.pill', tagName(t))))),
    auth.signedIn && !canEdit ? enrollBtn : null),
    isEnrolled ? h('div.progress', progressBar, progressText) : null,
    h('div.cols',
      h('section.box', h('h2', 'Outline'), outlineEl),
      h('div', staff, feedback, forum)))
  await Promise.all([renderFeedback(feedback, id, isEnrolled), renderForum(forum, id)])
}

function addUnitForm (courseId) {
  const t = h('input', { required: true, placeholder: 'New unit title', 'aria-label': 'New unit title' })
  return h('form.row', { onsubmit: async (e) => { e.preventDefault(); try { await post(`/courses/${courseId}/units`, { title: t.value }); render() } catch (err) { showError(err) } } }, t, h('button', { type: 'submit' }, 'Add unit'))
}

function addLessonForm (unitId) {
  const t = h('input', { required: true, placeholder: 'New lesson title', 'aria-label': 'New lesson title' })
  return h('form.row', { onsubmit: async (e) => { e.preventDefault(); try { await post(`/units/${unitId}/lessons`, { title: t.value, content_type: 'text' }); render() } catch (err) { showError(err) } } }, t, h('button', { type: 'submit' }, 'Add lesson'))
}

function collaboratorForm (courseId) {
  const who = h('input', { required: true, placeholder: 'clerk id, e.g. user_bob', 'aria-label': 'Collaborator clerk id' })
  const role = h('select', { 'aria-label': 'Role' }, h('option', { value: 'editor' }, 'editor'), h('option', { value: 'viewer' }, 'viewer'))
  return h('form.row', {
    onsubmit: async (e) => {
      e.preventDefault()
      try { await post(`/courses/${courseId}/collaborators`, { clerk_id: who.value.trim(), role: role.value }); toast('Collaborator added', `${who.value} is now ${role.value}`); who.value = '' } catch (err) { showError(err) }
    }
  }, who, role, h('button', { type: 'submit' }, 'Add collaborator'))
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

async function renderForum (box, courseId) {
  const list = h('ul.posts', { 'data-testid': 'posts' })
  const page = await get(`/courses/${courseId}/forum/posts?limit=30`)
  const addPost = (p, first) => {
    if (list.querySelector(`[data-id="${p.id}"]`)) return
    const li = h('li', { dataset: { id: p.id } }, h('a', { href: `/threads/${p.id}` }, p.title),
      h('small.muted', ` by ${authorOf(p)} · ${p.reply_count ?? 0} replies · ${p.like_count ?? 0} likes`))
    if (first) list.prepend(li); else list.append(li)
  }
  for (const p of page.items) addPost(p)
  if (auth.signedIn) {
    onLeave(live.subscribe(`course:${courseId}`, page.last_event_id ?? null, (ev, data) => {
      if (ev === 'post.created') addPost(data, true)
      if (ev === 'post.deleted') list.querySelector(`[data-id="${data.id}"]`)?.remove()
    }))
  }
  let form = null
  if (auth.signedIn) {
    const title = h('input', { required: true, name: 'title', placeholder: 'Title', 'aria-label': 'Post title' })
    const content = h('textarea', { required: true, name: 'content', rows: 3, placeholder: 'Ask or share something', 'aria-label': 'Post text' })
    form = h('form.stack', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { const p = await post(`/courses/${courseId}/forum/posts`, { title: title.value, content: content.value }); navigate(`/threads/${p.id}`) } catch (err) { showError(err) }
      }
    }, title, content, h('button', { type: 'submit' }, 'Start a thread'))
  }
  clear(box, h('h2#forum-h', 'Forum'), list, form)
}

import './style.css'
import { h, clear, auth, api, get, post, put, del, patch, getAll, qs, live, toast, showError, errorText, stars, userName, timeAgo, fmtTime, ApiError } from './lib.js'

const mainEl = document.getElementById('main')
const top = document.getElementById('top')
export const state = { me: null, unread: 0, cleanup: [], root: null }

// --- routing ------------------------------------------------------------------------------

const routes = [
  [/^\/$/, catalogue],
  [/^\/signin$/, signIn],
  [/^\/courses\/([0-9a-f-]+)$/, coursePage],
  [/^\/lessons\/([0-9a-f-]+)$/, lessonPage],
  [/^\/threads\/([0-9a-f-]+)$/, threadPage],
  [/^\/courses\/[0-9a-f-]+\/forum\/([0-9a-f-]+)$/, threadPage], // the links notifications carry
  [/^\/me$/, mePage],
  [/^\/notifications$/, notificationsPage]
]

export function navigate (path, replace = false) {
  if (replace) history.replaceState(null, '', path)
  else history.pushState(null, '', path)
  render()
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]')
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return
  const url = new URL(a.href, location.href)
  if (url.origin !== location.origin || /^\/(api|docs|media|openapi)/.test(url.pathname)) return
  e.preventDefault()
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return // in-page anchor
  navigate(url.pathname + url.search + url.hash)
})
window.addEventListener('popstate', () => render())

async function render () {
  for (const fn of state.cleanup.splice(0)) { try { fn() } catch { /* already gone */ } }
  closePanel()
  const path = location.pathname
  if (!auth.signedIn && path !== '/signin' && auth.mode === 'dev' && !/^\/(courses|lessons|threads)\//.test(path) && path !== '/') {
    return navigate('/signin?next=' + encodeURIComponent(path), true)
  }
  // each visit renders into its own root: a page that finishes loading after you left writes nowhere visible
  const main = h('div.view')
  state.root = main
  clear(mainEl, main)
  for (const [re, page] of routes) {
    const m = path.match(re)
    if (m) {
      clear(main, h('p.muted', 'Loading…'))
      try {
        await page(...m.slice(1))
        if (location.hash && state.root === main) {
          const target = document.getElementById(decodeURIComponent(location.hash.slice(1)))
          if (target) { target.scrollIntoView({ block: 'start' }); target.classList.add('target') }
        }
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) clear(main, h('h1', 'Not found'), h('p', 'This page does not exist or you cannot see it.'))
        else if (err instanceof ApiError && err.status === 401) navigate('/signin?next=' + encodeURIComponent(path), true)
        else clear(main, h('h1', 'Could not load this page'), h('p.error', errorText(err)))
      }
      return
    }
  }
  clear(main, h('h1', 'Not found'), h('p', h('a', { href: '/' }, 'Back to the catalogue')))
}

export const onLeave = (fn) => state.cleanup.push(fn)

// --- header, bell, notifications -----------------------------------------------------------

function bellIcon () {
  const ns = 'http://www.w3.org/2000/svg'
  const svg = document.createElementNS(ns, 'svg')
  svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('width', '18'); svg.setAttribute('height', '18'); svg.setAttribute('aria-hidden', 'true')
  const path = document.createElementNS(ns, 'path')
  path.setAttribute('d', 'M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1z')
  path.setAttribute('fill', 'currentColor')
  svg.append(path)
  return svg
}
const bellCount = h('span.badge', { 'data-testid': 'unread-count', 'aria-hidden': 'true' }, '0')
const bellLabel = h('span.sr-only', 'Notifications, 0 unread')
const bell = h('button.bell', { type: 'button', 'aria-haspopup': 'dialog', 'aria-expanded': 'false', 'data-testid': 'bell', onclick: () => togglePanel() },
  bellIcon(), bellCount, bellLabel)
const liveDot = h('span.live-dot', { title: 'Live updates: offline', 'data-status': 'offline' })
let panel = null

function setUnread (n) {
  state.unread = Math.max(0, Number(n) || 0)
  bellCount.textContent = String(state.unread)
  bellCount.hidden = state.unread === 0
  bellCount.dataset.count = String(state.unread)
  bellLabel.textContent = `Notifications, ${state.unread} unread`
}

function renderHeader () {
  const nav = h('nav', { 'aria-label': 'Main' },
    h('a.brand', { href: '/' }, 'Scriptorium'),
    h('a', { href: '/' }, 'Catalogue'),
    auth.signedIn ? h('a', { href: '/me' }, 'Me') : null)
  const right = h('div.top-right')
  if (auth.signedIn) {
    right.append(liveDot, bell,
      h('span.who', { 'data-testid': 'me-name' }, state.me?.name || auth.session?.name || ''),
      h('button.link', { type: 'button', onclick: () => { auth.signOut(); navigate('/signin') } }, 'Sign out'))
  } else {
    right.append(h('a.button', { href: '/signin' }, 'Sign in'))
  }
  clear(top, h('div.bar', nav, right))
}
live.on('status', (s) => {
  liveDot.dataset.status = s
  liveDot.title = `Live updates: ${s}`
})

function closePanel () {
  if (panel) { panel.remove(); panel = null; bell.setAttribute('aria-expanded', 'false') }
}

async function togglePanel () {
  if (panel) { closePanel(); bell.focus(); return }
  panel = h('section.panel', { role: 'dialog', 'aria-label': 'Notifications', 'data-testid': 'notif-panel' })
  bell.setAttribute('aria-expanded', 'true')
  top.append(panel)
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { closePanel(); bell.focus() } })
  await fillNotifications(panel, true)
  panel.querySelector('button, a')?.focus()
}

async function fillNotifications (box, compact) {
  const list = h('ul.notifs')
  const readAll = h('button', { type: 'button', onclick: async () => { try { await post('/notifications/read-all') } catch (e) { showError(e) } } }, 'Mark all read')
  clear(box, h('div.panel-head', h('h2', 'Notifications'), readAll, compact ? h('a', { href: '/notifications' }, 'All') : null), list)
  try {
    const page = await get('/notifications?limit=20')
    if (!page.items.length) list.append(h('li.muted', 'Nothing yet.'))
    for (const n of page.items) list.append(notifItem(n))
  } catch (e) { list.append(h('li.error', errorText(e))) }
}

function notifLink (n) {
  const m = n.metadata || {}
  if (typeof m.link === 'string' && m.link.startsWith('/') && !m.link.startsWith('//')) return m.link
  if (m.post_id) return `/threads/${m.post_id}`
  if (m.lesson_id) return `/lessons/${m.lesson_id}`
  if (m.course_id) return `/courses/${m.course_id}`
  if (n.type === 'achievement' || n.type === 'goal_completed') return '/me'
  return null
}

function notifItem (n) {
  const link = notifLink(n)
  const li = h('li.notif', { dataset: { id: n.id }, class: n.read_at ? 'read' : 'unread' },
    h('div', link ? h('a', { href: link }, n.title) : h('strong', n.title), n.body ? h('div.muted', n.body) : null, h('small.muted', timeAgo(n.created_at))),
    n.read_at ? null : h('button.small', { type: 'button', onclick: async () => { try { await post(`/notifications/${n.id}/read`) } catch (e) { showError(e) } } }, 'Mark read'))
  return li
}

function markReadInDom (ids) {
  for (const li of document.querySelectorAll('li.notif')) {
    if (ids === 'all' || ids.includes(li.dataset.id)) {
      li.classList.remove('unread'); li.classList.add('read')
      li.querySelector('button')?.remove()
    }
  }
}

let userUnsub = null
function startUserChannel () {
  userUnsub?.()
  userUnsub = live.subscribe('user:me', null, (event, data) => {
    if (event === 'notification.created') {
      if (data.unread_count !== undefined) setUnread(data.unread_count); else setUnread(state.unread + 1)
      toast(data.title, data.body, { href: notifLink(data) })
      for (const list of document.querySelectorAll('ul.notifs')) list.prepend(notifItem(data))
      document.dispatchEvent(new CustomEvent('scr:notification', { detail: data }))
    } else if (event === 'notification.read') {
      if (data.unread_count !== undefined) setUnread(data.unread_count)
      markReadInDom(data.ids === 'all' ? 'all' : (data.ids || []).map(String))
    } else if (event === 'achievement.earned') {
      document.dispatchEvent(new CustomEvent('scr:achievement', { detail: data }))
    } else if (event === 'streak.updated') {
      document.dispatchEvent(new CustomEvent('scr:streak', { detail: data }))
    } else if (event === 'reset') {
      get('/notifications/unread-count').then((r) => setUnread(r.unread_count)).catch(() => {})
    }
  })
  get('/notifications/unread-count').then((r) => setUnread(r.unread_count)).catch(() => {})
}

// --- sign in ------------------------------------------------------------------------------

// the people of `python -m server demo`
const DEMO_PEOPLE = [['user_alice', 'Alice Author', 'author'], ['user_bob', 'Bob Editor', 'editor'],
  ['user_carol', 'Carol Learner', 'learner'], ['user_dan', 'Dan Learner', 'learner']]

async function signIn () {
  const main = state.root
  const next = new URLSearchParams(location.search).get('next') || '/'
  if (auth.mode === 'clerk') {
    const box = h('div#clerk-sign-in')
    clear(main, h('h1', 'Sign in'), box)
    auth.mountClerkSignIn(box)
    return
  }
  const input = h('input', { id: 'signin-name', name: 'name', required: true, autocomplete: 'name', placeholder: 'Your name', maxlength: 80 })
  const err = h('p.error', { role: 'alert' })
  const go = async (name, sub) => {
    try { await auth.devSignIn(name, sub); await afterSignIn(); navigate(next) } catch (e) { err.textContent = errorText(e) }
  }
  clear(main,
    h('h1', 'Sign in (development mode)'),
    h('p.muted', 'Pick a demo person or type any name. Each name is its own account.'),
    h('div.row.people', DEMO_PEOPLE.map(([sub, n, role]) => h('button', { type: 'button', onclick: () => go(n, sub) }, n, h('small.muted', ` (${role})`)))),
    h('form.stack', { onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) go(input.value) } },
      h('label', { for: 'signin-name' }, 'Name'), input, h('button.primary', { type: 'submit' }, 'Sign in')),
    err)
  input.focus()
}

async function afterSignIn () {
  state.me = await get('/me').catch(() => null)
  renderHeader()
  live.start()
  startUserChannel()
}

// --- catalogue ----------------------------------------------------------------------------

const tagName = (t) => (typeof t === 'string' ? t : t?.name)
const langCode = (l) => (typeof l === 'string' ? l : l?.code)

async function catalogue () {
  const main = state.root
  let t = null
  const params = new URLSearchParams(location.search)
  const [tags, langs] = await Promise.all([get('/tags?limit=100').catch(() => ({ items: [] })), get('/languages?limit=100').catch(() => ({ items: [] }))])
  const q = h('input', { type: 'search', id: 'q', name: 'q', value: params.get('q') || '', placeholder: 'Search courses', 'aria-label': 'Search courses' })
  const sel = (name, label, options) => {
    const s = h('select', { name, 'aria-label': label }, h('option', { value: '' }, `Any ${label.toLowerCase()}`),
      options.map(([v, t]) => h('option', { value: v, selected: params.get(name) === v }, t)))
    return s
  }
  const tag = sel('tag', 'Tag', (tags.items || tags).map((t) => [tagName(t), tagName(t)]))
  const language = sel('language', 'Language', (langs.items || langs).map((l) => [langCode(l), l.name || langCode(l)]))
  const difficulty = sel('difficulty', 'Difficulty', ['beginner', 'intermediate', 'advanced'].map((d) => [d, d]))
  const grid = h('div.cards', { 'aria-live': 'polite' })
  const more = h('button', { type: 'button', hidden: true }, 'More courses')
  let cursor = null
  let alive = true
  let seq = 0
  onLeave(() => { alive = false; clearTimeout(t) })
  const load = async (reset) => {
    if (!alive) return
    const filters = { q: q.value.trim(), tag: tag.value, language: language.value, difficulty: difficulty.value }
    const mine = ++seq
    if (reset) history.replaceState(null, '', '/' + qs(filters))
    try {
      const page = await get('/courses' + qs({ ...filters, limit: 12, cursor: reset ? null : cursor }))
      if (!alive || mine !== seq) return // the user left, or a newer search superseded this one
      if (reset) clear(grid)
      if (reset && !page.items.length) grid.append(h('p.muted', 'No course matches.'))
      for (const c of page.items) grid.append(courseCard(c))
      cursor = page.next_cursor
      more.hidden = !cursor
    } catch (e) { grid.append(h('p.error', errorText(e))) }
  }
  more.onclick = () => load(false)
  q.addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => load(true), 250) })
  for (const s of [tag, language, difficulty]) s.addEventListener('change', () => load(true))
  const create = auth.signedIn ? newCourseForm() : null
  clear(main,
    h('div.page-head', h('h1', 'Courses'), create),
    h('form.filters', { role: 'search', onsubmit: (e) => { e.preventDefault(); load(true) } }, q, tag, language, difficulty),
    grid, more)
  await load(true)
}

function newCourseForm () {
  const title = h('input', { name: 'title', required: true, placeholder: 'New course title', 'aria-label': 'New course title', maxlength: 200 })
  return h('form.row', {
    onsubmit: async (e) => {
      e.preventDefault()
      try { const c = await post('/courses', { title: title.value.trim() }); navigate(`/courses/${c.id}`) } catch (err) { showError(err) }
    }
  }, title, h('button', { type: 'submit' }, 'Create course'))
}

function courseCard (c) {
  return h('article.card', { 'data-testid': 'course-card' },
    h('h2', h('a', { href: `/courses/${c.id}` }, c.title)),
    c.is_published === false ? h('span.pill.draft', 'Draft') : null,
    h('p', c.description || ''),
    h('div.meta', stars(c.rating_avg, c.rating_count), h('span', `${c.lesson_count ?? 0} lessons`), h('span', `${c.enrolled_count ?? 0} enrolled`), c.difficulty ? h('span', c.difficulty) : null),
    h('div.tags', (c.tags || []).map((t) => h('a.pill', { href: '/' + qs({ tag: tagName(t) }) }, tagName(t)))))
}

// --- course page --------------------------------------------------------------------------

async function coursePage (id) {
  const main = state.root
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
    let count = f.upvote_count ?? f.upvotes ?? 0
    let mine = !!(f.upvoted_by_me ?? f.voted_by_me)
    const btn = h('button.small', { type: 'button', 'aria-pressed': String(mine) })
    const label = () => { btn.textContent = `▲ ${count}`; btn.setAttribute('aria-label', `Upvote (${count})`); btn.setAttribute('aria-pressed', String(mine)) }
    label()
    btn.onclick = async () => {
      try {
        const r = mine ? await del(`/feedback/${f.id}/upvote`) : await put(`/feedback/${f.id}/upvote`, {})
        count = r.upvote_count ?? r.count ?? r.upvotes ?? count + (mine ? -1 : 1); mine = r.upvoted_by_me ?? r.upvoted ?? !mine; label()
      } catch (e) { showError(e) }
    }
    list.append(h('li', h('span.rating', { 'aria-label': `${f.rating} stars` }, '★'.repeat(f.rating) + '☆'.repeat(5 - f.rating)), ' ', h('strong', userName(f.author || f.user || f)), h('p', f.comment || ''), btn))
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

const authorOf = (x) => x?.author?.name || x?.user?.name || x?.author_name || x?.user_name || x?.user_id || 'Someone'

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

// --- lesson (editor chunk is lazy) ----------------------------------------------------------

async function lessonPage (id) {
  const main = state.root
  const mod = await import('./lesson.js')
  await mod.lessonPage(id, { main, onLeave, state })
}

// --- forum thread -------------------------------------------------------------------------

async function threadPage (id) {
  const main = state.root
  const postObj = await get(`/forum/posts/${id}`)
  const since = postObj.last_event_id ?? 0
  const repliesPage = await getAll(`/forum/posts/${id}/replies?limit=50`, 5)
  const me = state.me?.clerk_id || auth.session?.sub
  const nodes = new Map() // reply id -> {li, children ul, likeBtn}
  const root = h('ul.replies', { 'data-testid': 'replies' })
  const typingEl = h('p.typing', { 'aria-live': 'polite', 'data-testid': 'typing' })

  const likeButton = (kind, obj) => {
    let count = obj.like_count ?? 0
    let mine = !!obj.liked_by_me
    const own = (obj.user_id || obj.author?.clerk_id) === me
    const btn = h('button.small.like', { type: 'button', disabled: own || !auth.signedIn, 'data-testid': `like-${kind}` })
    const label = () => { btn.textContent = `♥ ${count}`; btn.setAttribute('aria-pressed', String(mine)); btn.setAttribute('aria-label', `Like (${count} likes)`) }
    label()
    btn.onclick = async () => {
      try {
        const path = `/forum/${kind === 'post' ? 'posts' : 'replies'}/${obj.id}/like`
        const r = mine ? await del(path) : await put(path, {})
        count = r.like_count; mine = r.liked_by_me; label()
      } catch (e) { showError(e) }
    }
    btn.setCount = (n) => { count = n; label() }
    return btn
  }

  const replyForm = (parentId, onDone) => {
    const ta = h('textarea', { required: true, rows: 2, 'aria-label': parentId ? 'Your reply to this reply' : 'Your reply', placeholder: 'Write a reply', 'data-testid': 'reply-input' })
    let lastTyping = 0
    ta.addEventListener('input', () => {
      if (Date.now() - lastTyping > 2000) { lastTyping = Date.now(); live.typing(`thread:${id}`) }
    })
    const form = h('form.stack.reply-form', {
      onsubmit: async (e) => {
        e.preventDefault()
        const body = { content: ta.value }
        if (parentId) body.parent_reply_id = parentId
        try {
          const r = await post(`/forum/posts/${id}/replies`, body)
          addReply(r)
          ta.value = ''
          onDone?.()
        } catch (err) { showError(err) }
      }
    }, ta, h('div.row', h('button', { type: 'submit' }, 'Reply'), parentId ? h('button.link', { type: 'button', onclick: () => onDone?.() }, 'Cancel') : null))
    return form
  }

  const addReply = (r) => {
    if (nodes.has(r.id)) { updateReply(r); return }
    const children = h('ul.replies')
    const deleted = !!r.deleted_at || r.content === '[deleted]'
    const body = h('div.reply-body', { class: deleted ? 'muted' : '' }, deleted ? '[deleted]' : r.content)
    const likeBtn = likeButton('reply', r)
    const toggle = h('button.small.link', { type: 'button', 'aria-expanded': 'true', hidden: true })
    const setToggle = () => {
      const n = children.children.length
      toggle.hidden = n === 0
      const open = toggle.getAttribute('aria-expanded') === 'true'
      toggle.textContent = open ? `Hide ${n} ${n === 1 ? 'reply' : 'replies'}` : `Show ${n} ${n === 1 ? 'reply' : 'replies'}`
    }
    toggle.onclick = () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true'
      toggle.setAttribute('aria-expanded', String(open)); children.hidden = !open; setToggle()
    }
    const slot = h('div')
    const replyBtn = auth.signedIn ? h('button.small.link', {
      type: 'button',
      onclick: () => {
        if (slot.firstChild) { slot.replaceChildren(); return }
        const f = replyForm(r.id, () => { slot.replaceChildren(); replyBtn.focus() })
        slot.append(f); f.querySelector('textarea').focus()
      }
    }, 'Reply') : null
    // your own reply: edit in place, delete with an inline confirmation (no dialog)
    const own = auth.signedIn && !deleted && (r.user_id || r.author?.clerk_id) === me
    const ownControls = own ? h('span.row') : null
    if (own) {
      const editBtn = h('button.small.link', { type: 'button', 'data-testid': 'edit-reply' }, 'Edit')
      const delBtn = h('button.small.link', { type: 'button', 'data-testid': 'delete-reply' }, 'Delete')
      let armed = null
      editBtn.onclick = () => {
        const ta = h('textarea', { rows: 2, required: true, 'aria-label': 'Edit your reply' })
        ta.value = body.textContent
        const done = () => { slot.replaceChildren(); editBtn.focus() }
        const form = h('form.stack.reply-form', {
          onsubmit: async (e) => {
            e.preventDefault()
            try { updateReply(await patch(`/forum/replies/${r.id}`, { content: ta.value })); done() } catch (err) { showError(err) }
          }
        }, ta, h('div.row', h('button', { type: 'submit' }, 'Save'), h('button.link', { type: 'button', onclick: done }, 'Cancel')))
        slot.replaceChildren(form)
        ta.focus()
      }
      delBtn.onclick = async () => {
        if (!armed) { // first press asks, a second one within 5 s deletes
          delBtn.textContent = 'Really delete?'
          armed = setTimeout(() => { armed = null; delBtn.textContent = 'Delete' }, 5000)
          return
        }
        clearTimeout(armed); armed = null
        try {
          await del(`/forum/replies/${r.id}`)
          updateReply({ id: r.id, deleted_at: 'now', reply_count: children.children.length })
        } catch (err) { showError(err) }
      }
      ownControls.append(editBtn, delBtn)
    }
    const li = h('li.reply', { id: `reply-${r.id}`, dataset: { id: r.id }, 'data-testid': 'reply' },
      h('div.reply-head', h('strong', authorOf(r)), h('small.muted', ` ${timeAgo(r.created_at)}`)),
      body, h('div.row', likeBtn, replyBtn, ownControls, toggle), slot, children)
    nodes.set(r.id, { li, children, likeBtn, body, setToggle, ownControls })
    const parent = r.parent_reply_id ? nodes.get(r.parent_reply_id) : null
    if (parent) { parent.children.append(li); parent.setToggle() } else root.append(li)
    for (const c of r.replies || r.children || []) addReply(c)
  }
  const updateReply = (r) => {
    const n = nodes.get(r.id)
    if (!n) return
    const deleted = !!r.deleted_at || r.content === '[deleted]'
    if (deleted && !n.children.children.length) { // a leaf is gone; one with replies stays as [deleted]
      const parent = n.li.parentElement?.closest('li.reply')
      n.li.remove()
      nodes.delete(r.id)
      if (parent) nodes.get(parent.dataset.id)?.setToggle()
      return
    }
    n.body.textContent = deleted ? '[deleted]' : r.content
    n.body.classList.toggle('muted', deleted)
    if (deleted) n.ownControls?.remove()
    if (r.like_count !== undefined) n.likeBtn.setCount(r.like_count)
  }
  // flat lists arrive parents-first thanks to ordering; trees via replies/children
  const flat = repliesPage.items
  const pending = [...flat]
  for (let pass = 0; pass < 5 && pending.length; pass++) {
    for (let i = 0; i < pending.length;) {
      const r = pending[i]
      if (!r.parent_reply_id || nodes.has(r.parent_reply_id)) { addReply(r); pending.splice(i, 1) } else i++
    }
  }

  const postLike = likeButton('post', postObj)
  const typers = new Map()
  const showTyping = () => {
    const names = [...typers.values()].map((t) => t.name)
    typingEl.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : ''
  }
  if (auth.signedIn) {
    onLeave(live.subscribe(`thread:${id}`, since, (ev, data) => {
      if (ev === 'reply.created') {
        addReply(data)
        const who = data.author?.clerk_id || data.user_id
        if (typers.has(who)) { clearTimeout(typers.get(who).timer); typers.delete(who); showTyping() }
      }
      else if (ev === 'reply.updated' || ev === 'reply.deleted') updateReply(ev === 'reply.deleted' ? { ...data, deleted_at: data.deleted_at || 'now' } : data)
      else if (ev === 'post.liked') postLike.setCount(data.like_count)
      else if (ev === 'reply.liked') nodes.get(data.id)?.likeBtn.setCount(data.like_count)
      else if (ev === 'typing') {
        if (data.user_id === me) return
        const who = data.user_id
        clearTimeout(typers.get(who)?.timer)
        typers.set(who, { name: data.name || who, timer: setTimeout(() => { typers.delete(who); showTyping() }, 4000) })
        showTyping()
      } else if (ev === 'reset') render()
    }))
  }
  clear(main,
    h('p', h('a', { href: `/courses/${postObj.course_id}` }, '← Course')),
    h('article.box.post', h('h1', postObj.title), h('p.muted', `by ${authorOf(postObj)} · ${fmtTime(postObj.created_at)}`),
      h('div.post-body', postObj.content), h('div.row', postLike)),
    h('section', { 'aria-label': 'Replies' }, h('h2', 'Replies'), root, typingEl,
      auth.signedIn ? replyForm(null) : h('p', h('a', { href: '/signin?next=' + encodeURIComponent(location.pathname) }, 'Sign in'), ' to reply.')))
  const target = location.hash && document.getElementById(location.hash.slice(1))
  if (target) { target.classList.add('target'); target.scrollIntoView({ block: 'center' }) }
}

// --- notifications page -------------------------------------------------------------------

async function notificationsPage () {
  const main = state.root
  const box = h('section.box')
  clear(main, box)
  await fillNotifications(box, false)
}

// --- me -----------------------------------------------------------------------------------

async function mePage () {
  const main = state.root
  const mod = await import('./me.js')
  await mod.mePage({ main, onLeave, state, render })
}

// --- boot ---------------------------------------------------------------------------------

async function boot () {
  await auth.init()
  auth.on('token', async (t) => {
    if (!t) { state.me = null; renderHeader(); live.stopped = true; return }
    if (auth.mode === 'clerk' && state.me?.clerk_id !== auth.session?.sub) { // signed in through Clerk's component
      await afterSignIn()
      if (location.pathname === '/signin') navigate(new URLSearchParams(location.search).get('next') || '/')
    }
  })
  if (auth.signedIn) await afterSignIn()
  else renderHeader()
  await render()
}
window.scriptorium = { live, auth } // a handle for debugging and the browser tests (no secrets)
boot()

export { h, api, patch }

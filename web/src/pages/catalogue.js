// The catalogue (/): search and filters, course cards, a form to create a course.
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, qs } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { showError } from '../lib/toast.js'
import { stars, tagName } from '../lib/format.js'
import { navigate, onLeave } from '../lib/router.js'

const langCode = (l) => (typeof l === 'string' ? l : l?.code)

export default async function catalogue (main) {
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

// My work: the courses I author and those I collaborate on (drafts included), and my suggested
// edits with their status (open ones can be withdrawn here).
import { h, clear } from '../lib/dom.js'
import { getAll } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { mySuggestionItem } from './mywork-suggestions.js'

const ROLE = { author: 'Author', editor: 'Editor', viewer: 'Viewer' }

export default async function myWorkPage (main) {
  const authored = h('section.box', { 'aria-labelledby': 'mw-a' })
  const shared = h('section.box', { 'aria-labelledby': 'mw-c' })
  const suggestions = h('section.box', { 'aria-labelledby': 'mw-s', 'data-testid': 'my-work-suggestions' })
  clear(main, h('h1', 'My work'), h('div.cols', h('div', authored, shared), suggestions))

  const courseItem = (c) => h('li', { 'data-testid': 'team-course', dataset: { id: c.id } },
    h('a', { href: `/courses/${c.id}` }, c.title), ' ',
    h('span.pill', { class: c.is_published ? '' : 'draft' }, c.is_published ? 'Published' : 'Draft'), ' ',
    c.role !== 'author' ? h('span.pill', ROLE[c.role]) : null,
    h('small.muted', ` ${c.lesson_count} lesson${c.lesson_count === 1 ? '' : 's'}`))

  const courses = (async () => {
    try {
      const { items } = await getAll('/me/team-courses?limit=100', 5)
      const mine = items.filter((c) => c.role === 'author')
      const others = items.filter((c) => c.role !== 'author')
      clear(authored, h('h2#mw-a', 'Courses I author'),
        mine.length ? h('ul.work-list', mine.map(courseItem)) : h('p.muted', 'None yet. Create a course from the catalogue.'))
      clear(shared, h('h2#mw-c', 'Courses I collaborate on'),
        others.length ? h('ul.work-list', others.map(courseItem)) : h('p.muted', 'None: an author can add you as an editor or viewer.'))
    } catch (e) { clear(authored, h('h2#mw-a', 'Courses I author'), h('p.error', errorText(e))) }
  })()

  const filter = h('select', { 'data-testid': 'suggestion-filter' },
    [['open', 'Open'], ['', 'All'], ['accepted', 'Accepted'], ['rejected', 'Rejected'], ['withdrawn', 'Withdrawn']].map(([v, t]) => h('option', { value: v }, t)))
  const list = h('ul.suggestions', { 'data-testid': 'my-suggestions' })
  const loadSuggestions = async () => {
    clear(list, h('li.muted', 'Loading…'))
    try {
      const { items } = await getAll(`/me/suggested-edits?limit=100${filter.value ? `&status=${filter.value}` : ''}`, 5)
      clear(list, items.length ? items.map((s) => mySuggestionItem(s, { withLesson: true })) : h('li.muted', filter.value === 'open' ? 'No open suggestions.' : 'No suggestions.'))
    } catch (e) { clear(list, h('li.error', errorText(e))) }
  }
  filter.onchange = loadSuggestions
  clear(suggestions, h('h2#mw-s', 'My suggestions'), h('label.row', 'Show', filter), list)
  await Promise.all([courses, loadSuggestions()])
}

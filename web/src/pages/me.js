// The "Me" page: streak, activity heatmap, goals, achievements, flashcard review.
import { h, clear } from '../lib/dom.js'
import { get, post, del, getAll } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { toast, showError } from '../lib/toast.js'
import { onLeave } from '../lib/router.js'

const iso = (d) => d.toISOString().slice(0, 10)

export default async function mePage (main) {
  const streakBox = h('section.box', { 'aria-labelledby': 'st-h' })
  const heat = h('section.box', { 'aria-labelledby': 'act-h' })
  const goals = h('section.box', { 'aria-labelledby': 'goal-h' })
  const ach = h('section.box', { 'aria-labelledby': 'ach-h' })
  const cards = h('section.box', { 'aria-labelledby': 'fc-h' })
  clear(main, h('h1', 'Me'), h('div.me-grid', streakBox, heat, goals, ach, cards))
  const onStreak = (e) => showStreak(e.detail)
  const onAch = () => loadAchievements()
  document.addEventListener('scr:streak', onStreak)
  document.addEventListener('scr:achievement', onAch)
  onLeave(() => { document.removeEventListener('scr:streak', onStreak); document.removeEventListener('scr:achievement', onAch) })

  function showStreak (s) {
    clear(streakBox, h('h2#st-h', 'Streak'),
      h('div.big', { 'data-testid': 'streak' }, `${s.current_streak ?? 0} day${s.current_streak === 1 ? '' : 's'}`),
      h('p.muted', `Longest: ${s.longest_streak ?? 0} · last active ${s.last_active_date || '—'}`))
  }
  get('/me/streak').then(showStreak).catch((e) => clear(streakBox, h('h2#st-h', 'Streak'), h('p.error', errorText(e))))

  // heatmap of the last 16 weeks
  ;(async () => {
    const to = new Date()
    const from = new Date(to.getTime() - 16 * 7 * 86400e3)
    const days = new Set()
    try {
      const r = await get(`/me/activity?from=${iso(from)}&to=${iso(to)}`)
      for (const d of r.days) days.add(d) // local dates, YYYY-MM-DD (server/gamification/api.py, get_activity)
    } catch (e) { clear(heat, h('h2#act-h', 'Activity'), h('p.error', errorText(e))); return }
    const grid = h('div.heatmap', { role: 'img', 'aria-label': `${days.size} active days in the last 16 weeks` })
    const start = new Date(from); start.setUTCDate(start.getUTCDate() - start.getUTCDay())
    for (let d = new Date(start); d <= to; d = new Date(d.getTime() + 86400e3)) {
      const key = iso(d)
      grid.append(h('span.cell', { class: days.has(key) ? 'on' : '', title: key }))
    }
    clear(heat, h('h2#act-h', 'Activity'), grid, h('p.muted', `${days.size} active days`))
  })()

  async function loadGoals () {
    const list = h('ul.goals')
    try {
      const { items } = await getAll('/me/goals?limit=50', 2)
      if (!items.length) list.append(h('li.muted', 'No goals yet.'))
      for (const g of items) {
        list.append(h('li', h('strong', g.title), ` ${g.progress ?? 0}/${g.target_value} ${g.target_type} (${g.period})`,
          g.completed_at ? h('span.pill', 'Done') : h('progress', { max: g.target_value, value: g.progress ?? 0, 'aria-label': `${g.title} progress` }),
          h('button.small.link', { type: 'button', onclick: async () => { try { await del(`/me/goals/${g.id}`); loadGoals() } catch (e) { showError(e) } } }, 'Delete')))
      }
    } catch (e) { list.append(h('li.error', errorText(e))) }
    const title = h('input', { required: true, placeholder: 'Goal', 'aria-label': 'Goal title' })
    const type = h('select', { 'aria-label': 'Target type' }, ['lessons', 'minutes', 'flashcards'].map((t) => h('option', { value: t }, t)))
    const value = h('input', { type: 'number', min: 1, value: 5, required: true, 'aria-label': 'Target value' })
    const period = h('select', { 'aria-label': 'Period' }, ['daily', 'weekly', 'once'].map((t) => h('option', { value: t }, t)))
    const form = h('form.row.wrap', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { await post('/me/goals', { title: title.value, target_type: type.value, target_value: Number(value.value), period: period.value }); loadGoals() } catch (err) { showError(err) }
      }
    }, title, value, type, period, h('button', { type: 'submit' }, 'Add goal'))
    clear(goals, h('h2#goal-h', 'Goals'), list, form)
  }
  loadGoals()

  async function loadAchievements () {
    const list = h('ul.achievements')
    try {
      const { items } = await getAll('/achievements?limit=100', 2)
      for (const a of items) {
        list.append(h('li', { class: a.earned ? 'earned' : '' }, h('span', { 'aria-hidden': 'true' }, a.earned ? '★ ' : '☆ '),
          h('strong', a.name), a.earned ? h('span.sr-only', ' (earned)') : null, h('div.muted', a.description || ''),
          a.earned ? null : h('progress', { max: 100, value: a.progress ?? 0, 'aria-label': `${a.name} progress` })))
      }
    } catch (e) { list.append(h('li.error', errorText(e))) }
    clear(ach, h('h2#ach-h', 'Achievements'), list)
  }
  loadAchievements()

  async function loadSets () {
    const list = h('ul.sets')
    try {
      const { items } = await getAll('/flashcard-sets?limit=50', 2)
      if (!items.length) list.append(h('li.muted', 'No flashcard sets yet.'))
      for (const s of items) {
        list.append(h('li', h('strong', s.title), ' ',
          h('button.small', { type: 'button', onclick: () => review(s) }, 'Review due cards'), ' ',
          h('button.small.link', { type: 'button', onclick: () => addCards(s) }, 'Add cards')))
      }
    } catch (e) { list.append(h('li.error', errorText(e))) }
    const title = h('input', { required: true, placeholder: 'New set title', 'aria-label': 'New set title' })
    clear(cards, h('h2#fc-h', 'Flashcards'), list,
      h('form.row', { onsubmit: async (e) => { e.preventDefault(); try { await post('/flashcard-sets', { title: title.value }); loadSets() } catch (err) { showError(err) } } },
        title, h('button', { type: 'submit' }, 'Create set')))
  }
  loadSets()

  function addCards (set) {
    const front = h('input', { required: true, placeholder: 'Front', 'aria-label': 'Card front' })
    const back = h('input', { required: true, placeholder: 'Back', 'aria-label': 'Card back' })
    const form = h('form.row.wrap', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { await post(`/flashcard-sets/${set.id}/cards`, { front: front.value, back: back.value }); toast('Card added'); front.value = ''; back.value = ''; front.focus() } catch (err) { showError(err) }
      }
    }, front, back, h('button', { type: 'submit' }, 'Add card'), h('button.link', { type: 'button', onclick: () => { form.remove(); loadSets() } }, 'Done'))
    cards.append(form)
    front.focus()
  }

  async function review (set) {
    let due
    try { due = (await get(`/flashcard-sets/${set.id}/due?limit=50`)).items } catch (e) { showError(e); return }
    let i = 0
    let shown = false
    const stage = h('div.review', { tabindex: '0', role: 'group', 'aria-label': 'Flashcard review: Space shows the answer, 1 again, 2 hard, 3 good, 4 easy' })
    const ratings = ['again', 'hard', 'good', 'easy']
    const rate = async (rating) => {
      if (!shown) return
      try { await post(`/flashcards/${due[i].id}/review`, { rating }) } catch (e) { showError(e); return }
      i++; shown = false; draw()
    }
    const draw = () => {
      if (i >= due.length) { clear(stage, h('p', 'All done for now.'), h('button', { type: 'button', onclick: () => { stage.remove(); loadSets() } }, 'Close')); return }
      const c = due[i]
      clear(stage, h('p.muted', `${set.title} · card ${i + 1} of ${due.length}`), h('p.card-front', c.front),
        shown ? h('p.card-back', c.back) : h('button', { type: 'button', onclick: () => { shown = true; draw() } }, 'Show answer (Space)'),
        shown ? h('div.row', ratings.map((r, k) => h('button', { type: 'button', onclick: () => rate(r) }, `${k + 1} ${r}`))) : null)
      stage.focus()
    }
    stage.addEventListener('keydown', (e) => {
      if (e.key === ' ' && !shown) { e.preventDefault(); shown = true; draw() }
      const k = ['1', '2', '3', '4'].indexOf(e.key)
      const byLetter = { a: 'again', h: 'hard', g: 'good', e: 'easy' }[e.key]
      if (k >= 0) rate(ratings[k]); else if (byLetter) rate(byLetter)
    })
    cards.append(stage)
    draw()
  }
}

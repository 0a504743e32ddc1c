// The course outline: units and lessons in order (with the learner's progress). For editors it is
// also where the structure changes: drag and drop, or the Move up / Move down buttons (keyboard), a
// lesson's "Unit" menu to move it to another unit, Rename, and Delete with Undo. Everyone signed in
// sees changes live: every structure write records `outline.updated` on `course:<id>` (docs/API.md
// §7, server/catalog/service.py outline_changed) and the view refetches the outline.
//
// Delete and Undo: the DELETE is held back for UNDO_MS while the toast offers Undo (the item is
// hidden here meanwhile); Undo just forgets it, so nothing (lesson text, media, learners' progress)
// has to be recreated. The DELETE goes when the window closes, or at once when the page is left
// (keepalive, so it survives closing the tab). Other viewers see the item go when the DELETE does.
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, put, patch, del } from '../lib/api.js'
import { live } from '../lib/live.js'
import { toast, showError } from '../lib/toast.js'

const UNDO_MS = 8000

/** The outline of course `courseId` as an element, kept current; returns {el, goLive, dispose}. */
export function outlineView (courseId, outline, { canEdit, enrolled, onProgress }) {
  let units = outline.units
  const pending = new Map() // id -> {kind, title, timer, toastEl} : deletes waiting out their undo window
  const list = h('ol.outline', { 'data-testid': 'outline' })
  const status = h('p.sr-only', { role: 'status', 'data-testid': 'outline-status' })
  const el = h('div', list, status, canEdit ? addUnitForm() : null)
  let busy = 0 // a rename form is open or a drag is under way: live refreshes wait for it
  let stale = null
  // Changes go to the server one at a time, in the order they were made: a reorder made before a
  // move must not reach the server after it (it would name a lesson no longer in that unit, a 422).
  // A live refresh waits until none is in flight, so it never undoes a change not yet answered.
  let queue = Promise.resolve()
  const deleted = new Set() // ids whose DELETE has been answered: later reorders leave them out
  function inOrder (request) {
    busy++
    const run = queue.then(request)
    queue = run.then(settle, settle)
    return run
  }
  const present = (ids) => ids.filter((x) => !deleted.has(x))
  let dragging = null // {kind, id}
  let refreshTimer = null

  const say = (text) => { status.textContent = text }
  const visible = (xs) => xs.filter((x) => !pending.has(x.id))
  const unitOf = (lessonId) => units.find((u) => u.lessons.some((l) => l.id === lessonId))

  // --- rendering (the whole list, keeping focus on the control that had it) ----------------

  function render () {
    const active = el.contains(document.activeElement) ? document.activeElement.dataset.focus : null
    const shown = visible(units)
    clear(list, shown.map((u, i) => unitItem(u, i, shown.length)))
    if (!shown.length) list.append(h('li.muted', 'No units yet.'))
    if (active) focusKey(active)
  }

  function focusKey (key) {
    const [id, what] = key.split(':')
    const other = { up: 'down', down: 'up' }[what]
    const pick = (w) => list.querySelector(`[data-focus="${id}:${w}"]:not(:disabled)`)
    const target = pick(what) || (other && pick(other)) || pick('rename')
    target?.focus()
  }

  function unitItem (u, i, count) {
    const lessons = h('ol.lessons', { dataset: { unit: u.id } })
    const shown = visible(u.lessons)
    const all = visible(units)
    const first = all[0]?.id === u.id
    const last = all[all.length - 1]?.id === u.id
    shown.forEach((l, j) => lessons.append(lessonItem(l, u, { first: first && j === 0, last: last && j === shown.length - 1 })))
    if (canEdit) {
      lessons.append(h('li.add', addLessonForm(u.id)))
      dropZone(lessons, 'lesson', (e) => (e.target === lessons || e.target.closest('li.add')) && { unitId: u.id, before: null })
    }
    const title = h('h3.unit-title', u.title)
    const head = h('div.unit-head', title, canEdit ? h('div.tools',
      button('Move up', u.title, `${u.id}:up`, () => moveUnit(u.id, -1), i === 0),
      button('Move down', u.title, `${u.id}:down`, () => moveUnit(u.id, 1), i === count - 1),
      button('Rename', u.title, `${u.id}:rename`, () => rename('unit', u, title)),
      button('Delete', u.title, `${u.id}:delete`, () => remove('unit', u))) : null)
    const li = h('li.unit', { dataset: { id: u.id }, 'data-testid': 'unit' }, head, lessons)
    if (canEdit) draggable(li, head, 'unit', u.id)
    return li
  }

  function lessonItem (l, u, { first, last }) {
    const done = l.status === 'completed'
    let box = null
    if (enrolled) {
      box = h('input', { type: 'checkbox', checked: done, 'aria-label': `Mark “${l.title}” complete` })
      box.onchange = async () => {
        try {
          const r = await put(`/lessons/${l.id}/progress`, { status: box.checked ? 'completed' : 'in_progress' })
          l.status = box.checked ? 'completed' : 'in_progress'
          onProgress?.(r.progress)
        } catch (e) { box.checked = !box.checked; showError(e) }
      }
    }
    const link = h('a', { href: `/lessons/${l.id}` }, l.title)
    const row = h('div.lesson-row', box, box ? ' ' : null, link, h('small.muted', ` ${l.content_type}`))
    if (canEdit) {
      const others = visible(units)
      const move = h('select', { 'aria-label': `Unit of “${l.title}”`, 'data-focus': `${l.id}:unit` },
        others.map((x) => h('option', { value: x.id, selected: x.id === u.id }, x.title)))
      move.onchange = () => moveLessonTo(l.id, move.value, null)
      row.append(h('div.tools',
        button('Move up', l.title, `${l.id}:up`, () => moveLesson(l.id, -1), first),
        button('Move down', l.title, `${l.id}:down`, () => moveLesson(l.id, 1), last),
        move,
        button('Rename', l.title, `${l.id}:rename`, () => rename('lesson', l, link)),
        button('Delete', l.title, `${l.id}:delete`, () => remove('lesson', l))))
    }
    const li = h('li.lesson', { class: done ? 'done' : '', dataset: { id: l.id }, 'data-testid': 'lesson' }, row)
    if (canEdit) draggable(li, row, 'lesson', l.id)
    return li
  }

  /** A small button whose accessible name is its visible text plus what it acts on. */
  function button (text, target, focus, onclick, disabled = false) {
    return h('button.small', { type: 'button', onclick, disabled, 'data-focus': focus }, text, h('span.sr-only', ` “${target}”`))
  }

  // --- moving --------------------------------------------------------------------------------

  async function moveUnit (id, delta) {
    const order = units.map((u) => u.id)
    const shown = visible(units).map((u) => u.id)
    const at = shown.indexOf(id)
    const swap = shown[at + delta]
    if (swap === undefined) return
    const a = order.indexOf(id); const b = order.indexOf(swap)
    ;[order[a], order[b]] = [order[b], order[a]]
    await reorderUnits(order)
    const title = units.find((u) => u.id === id).title
    say(`Moved unit “${title}” to position ${visible(units).findIndex((u) => u.id === id) + 1} of ${visible(units).length}.`)
  }

  async function reorderUnits (order) {
    const before = units
    units = order.map((id) => units.find((u) => u.id === id))
    render()
    try { await inOrder(() => post(`/courses/${courseId}/reorder`, { unit_ids: present(order) })) } catch (e) { units = before; render(); showError(e); refresh() }
  }

  async function moveLesson (id, delta) {
    const u = unitOf(id)
    const shown = visible(u.lessons).map((l) => l.id)
    const at = shown.indexOf(id)
    const swap = shown[at + delta]
    if (swap !== undefined) {
      const order = u.lessons.map((l) => l.id)
      const a = order.indexOf(id); const b = order.indexOf(swap)
      ;[order[a], order[b]] = [order[b], order[a]]
      await reorderLessons(u.id, order)
      say(`Moved “${titleOf(id)}” to position ${visible(u.lessons).findIndex((l) => l.id === id) + 1} in “${u.title}”.`)
      return
    }
    // past the first or last lesson of its unit: to the end of the unit before, or the start of the next
    const all = visible(units)
    const next = all[all.findIndex((x) => x.id === u.id) + delta]
    if (!next) return
    await moveLessonTo(id, next.id, delta < 0 ? null : next.lessons[0]?.id ?? null)
  }

  async function reorderLessons (unitId, order) {
    const u = units.find((x) => x.id === unitId)
    const before = u.lessons
    u.lessons = order.map((id) => u.lessons.find((l) => l.id === id))
    render()
    try { await inOrder(() => post(`/units/${unitId}/reorder`, { lesson_ids: present(order) })) } catch (e) { u.lessons = before; render(); showError(e); refresh() }
  }

  /** Move a lesson into unit `unitId`, before lesson `beforeId` (null: at the end). */
  async function moveLessonTo (id, unitId, beforeId) {
    const from = unitOf(id)
    const to = units.find((x) => x.id === unitId)
    if (!from || !to) return
    if (from === to) {
      const order = from.lessons.map((l) => l.id).filter((x) => x !== id)
      order.splice(beforeId ? order.indexOf(beforeId) : order.length, 0, id)
      if (order.join() !== from.lessons.map((l) => l.id).join()) await reorderLessons(unitId, order)
      return
    }
    const lesson = from.lessons.find((l) => l.id === id)
    const snapshot = units.map((u) => ({ ...u, lessons: [...u.lessons] }))
    from.lessons = from.lessons.filter((l) => l.id !== id)
    const position = beforeId ? to.lessons.findIndex((l) => l.id === beforeId) : to.lessons.length
    to.lessons.splice(position, 0, lesson)
    render()
    try {
      await inOrder(() => patch(`/lessons/${id}`, { unit_id: unitId, position }))
      say(`Moved “${lesson.title}” to unit “${to.title}”.`)
    } catch (e) { units = snapshot; render(); showError(e); refresh() }
  }

  const titleOf = (id) => units.flatMap((u) => [u, ...u.lessons]).find((x) => x.id === id)?.title || ''

  // --- drag and drop (HTML5; the same moves as the buttons) -----------------------------------

  function draggable (li, handle, kind, id) {
    li.draggable = true
    li.addEventListener('dragstart', (e) => {
      if (e.target !== li) return
      e.stopPropagation()
      dragging = { kind, id }
      busy++
      e.dataTransfer.effectAllowed = 'move'
      e.dataTransfer.setData('text/plain', id)
      li.classList.add('dragging')
    })
    li.addEventListener('dragend', (e) => {
      if (e.target !== li) return
      li.classList.remove('dragging')
      clearMarks()
      if (dragging) { dragging = null; settle() }
    })
    dropZone(li, kind, (e) => {
      const r = li.getBoundingClientRect()
      const after = e.clientY >= r.top + r.height / 2
      return kind === 'unit' ? { after, id } : { unitId: li.closest('ol.lessons').dataset.unit, before: after ? nextLessonId(li) : id, after, id }
    })
  }

  const nextLessonId = (li) => {
    let n = li.nextElementSibling
    while (n && !n.matches('li.lesson')) n = n.nextElementSibling
    return n?.dataset.id ?? null
  }

  function dropZone (target, kind, where) {
    target.addEventListener('dragover', (e) => {
      if (!dragging || dragging.kind !== kind) return
      const spot = where(e)
      if (!spot) return
      e.preventDefault()
      e.stopPropagation()
      e.dataTransfer.dropEffect = 'move'
      clearMarks()
      target.classList.add(spot.after === undefined ? 'drop-into' : spot.after ? 'drop-after' : 'drop-before')
    })
    target.addEventListener('drop', (e) => {
      if (!dragging || dragging.kind !== kind) return
      const spot = where(e)
      if (!spot) return
      e.preventDefault()
      e.stopPropagation()
      const moved = dragging
      dragging = null
      clearMarks()
      settle()
      if (spot.id === moved.id) return
      if (kind === 'unit') {
        const order = units.map((u) => u.id).filter((x) => x !== moved.id)
        order.splice(order.indexOf(spot.id) + (spot.after ? 1 : 0), 0, moved.id)
        reorderUnits(order).then(() => say(`Moved unit “${titleOf(moved.id)}”.`))
      } else {
        moveLessonTo(moved.id, spot.unitId, spot.before === moved.id ? null : spot.before)
      }
    })
  }

  const clearMarks = () => list.querySelectorAll('.drop-before, .drop-after, .drop-into').forEach((x) => x.classList.remove('drop-before', 'drop-after', 'drop-into'))

  // --- rename -----------------------------------------------------------------------------

  function rename (kind, item, titleEl) {
    const input = h('input', { required: true, maxlength: 200, 'aria-label': `New title for “${item.title}”` })
    input.value = item.title
    busy++
    let closed = false
    const close = (focus = true) => {
      if (closed) return
      closed = true
      form.replaceWith(titleEl)
      settle()
      if (focus) list.querySelector(`[data-focus="${item.id}:rename"]`)?.focus()
    }
    const form = h('form.row.rename', {
      onsubmit: async (e) => {
        e.preventDefault()
        const title = input.value.trim()
        if (!title || title === item.title) { close(); return }
        try {
          await inOrder(() => patch(`/${kind === 'unit' ? 'units' : 'lessons'}/${item.id}`, { title }))
          item.title = title
          titleEl.textContent = title
          say(`Renamed to “${title}”.`)
          close()
          render()
        } catch (err) { showError(err) }
      },
      onkeydown: (e) => { if (e.key === 'Escape') { e.preventDefault(); close() } }
    }, input, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: () => close() }, 'Cancel'))
    titleEl.replaceWith(form)
    input.focus()
    input.select()
  }

  // --- delete with undo -------------------------------------------------------------------

  function remove (kind, item) {
    const neighbour = focusAfterRemoval(item.id)
    const entry = { kind, title: item.title }
    pending.set(item.id, entry)
    render()
    const undo = h('button.toast-undo', { type: 'button', 'data-testid': 'undo' }, 'Undo')
    entry.toastEl = toast(`Deleted “${item.title}”`, kind === 'unit' ? 'The unit and its lessons go in a few seconds.' : 'It goes in a few seconds.', { timeout: UNDO_MS + 500 })
    entry.toastEl.querySelector('.toast-text').append(undo)
    entry.timer = setTimeout(() => flush(item.id), UNDO_MS)
    undo.onclick = () => {
      clearTimeout(entry.timer)
      pending.delete(item.id)
      entry.toastEl.remove()
      render()
      say(`Restored “${item.title}”.`)
      list.querySelector(`[data-focus="${item.id}:delete"]`)?.focus()
    }
    say(`Deleted “${item.title}”. Undo is available for ${UNDO_MS / 1000} seconds.`)
    if (neighbour) focusKey(`${neighbour}:delete`)
    else undo.focus()
  }

  function focusAfterRemoval (id) {
    const ids = [...list.querySelectorAll('li.unit, li.lesson')].map((x) => x.dataset.id)
    const at = ids.indexOf(id)
    return ids.slice(at + 1).find((x) => !pending.has(x)) || ids.slice(0, at).reverse().find((x) => !pending.has(x)) || null
  }

  async function flush (id, keepalive = false) {
    const entry = pending.get(id)
    if (!entry) return
    clearTimeout(entry.timer)
    entry.toastEl?.remove()
    const path = `/${entry.kind === 'unit' ? 'units' : 'lessons'}/${id}`
    try {
      if (keepalive) {
        await fetch('/api' + path, { method: 'DELETE', keepalive: true, headers: auth.token ? { authorization: `Bearer ${auth.token}` } : {} })
      } else {
        await inOrder(async () => { await del(path); deleted.add(id) })
      }
      pending.delete(id)
      for (const u of units) u.lessons = u.lessons.filter((l) => l.id !== id)
      units = units.filter((u) => u.id !== id)
    } catch (e) {
      pending.delete(id)
      showError(e)
      refresh()
    }
  }

  const flushAll = (keepalive) => { for (const id of [...pending.keys()]) flush(id, keepalive) }
  const onPageHide = () => flushAll(true)
  window.addEventListener('pagehide', onPageHide)

  // --- adding -----------------------------------------------------------------------------

  function addUnitForm () {
    const t = h('input', { required: true, placeholder: 'New unit title', 'aria-label': 'New unit title' })
    return h('form.row.add-unit', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { const u = await post(`/courses/${courseId}/units`, { title: t.value }); units = [...units, { ...u, lessons: [] }]; t.value = ''; render() } catch (err) { showError(err) }
      }
    }, t, h('button', { type: 'submit' }, 'Add unit'))
  }

  function addLessonForm (unitId) {
    const t = h('input', { required: true, placeholder: 'New lesson title', 'aria-label': 'New lesson title' })
    return h('form.row', {
      onsubmit: async (e) => {
        e.preventDefault()
        try {
          const l = await post(`/units/${unitId}/lessons`, { title: t.value, content_type: 'text' })
          const u = units.find((x) => x.id === unitId)
          if (u && !u.lessons.some((x) => x.id === l.id)) u.lessons.push({ id: l.id, title: l.title, content_type: l.content_type, position: l.position })
          render()
          list.querySelector(`ol[data-unit="${unitId}"] input[aria-label="New lesson title"]`)?.focus()
        } catch (err) { showError(err) }
      }
    }, t, h('button', { type: 'submit' }, 'Add lesson'))
  }

  // --- live ------------------------------------------------------------------------------

  function settle () {
    busy = Math.max(0, busy - 1)
    if (!busy && stale) { const s = stale; stale = null; apply(s) }
  }

  // someone typing a new title here keeps their text: the refresh waits until they leave the field
  const typing = () => list.contains(document.activeElement) && document.activeElement.matches('input, textarea')
  list.addEventListener('focusout', () => setTimeout(() => {
    if (!busy && stale && !typing()) { const s = stale; stale = null; apply(s) }
  }, 0))

  function apply ({ fresh, renamed }) {
    if (busy || typing()) { stale = { fresh, renamed }; return }
    units = fresh.units
    if (renamed?.lesson_id && renamed.title) { // the row may lag a live editing room by up to 2 s
      for (const u of units) for (const l of u.lessons) if (l.id === renamed.lesson_id) l.title = renamed.title
    }
    // keep the learner's own statuses (the refetch carries them too when enrolled)
    render()
  }

  function refresh (data) {
    clearTimeout(refreshTimer)
    refreshTimer = setTimeout(async () => {
      try { apply({ fresh: await get(`/courses/${courseId}/outline`), renamed: data }) } catch { /* gone or offline: the next event retries */ }
    }, 120)
  }

  let unsubscribe = null
  function goLive () {
    if (!auth.signedIn || unsubscribe) return
    unsubscribe = live.subscribe(`course:${courseId}`, null, (ev, data) => {
      if (ev === 'outline.updated') refresh(data)
      else if (ev === 'reset') refresh()
    })
  }

  function dispose () {
    clearTimeout(refreshTimer)
    unsubscribe?.()
    window.removeEventListener('pagehide', onPageHide)
    flushAll(false) // leaving the page ends the undo window
  }

  render()
  return { el, goLive, dispose }
}

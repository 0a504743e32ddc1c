// The course's collaborators (Manage panel, author and admins): who they are and their role; add a
// user by clerk id, change a role, remove someone. A change takes effect on the person's next request
// and in their open editor within seconds (the collab room re-checks rights: a removed person's
// socket closes and their editor turns read-only with a message, pages/lesson.js).
import { h, clear } from '../lib/dom.js'
import { get, post, patch, del } from '../lib/api.js'
import { errorText } from '../lib/errors.js'

export function collaboratorsPanel (courseId) {
  const list = h('ul.collaborators', { 'data-testid': 'collaborators' })
  const msg = h('p', { role: 'status', 'data-testid': 'collaborators-status' })
  const box = h('section.stack', { 'aria-labelledby': 'collab-h' }, h('h3#collab-h', 'Collaborators'), list, addForm(), msg)

  async function load () {
    try {
      const { items } = await get(`/courses/${courseId}/collaborators`)
      clear(list, items.map(row))
      if (!items.length) list.append(h('li.muted', 'No collaborators yet.'))
    } catch (e) { clear(list, h('li.error', errorText(e))) }
  }

  function row (c) {
    const name = c.name || c.clerk_id
    const role = h('select', { 'aria-label': `Role of ${name}` },
      ['editor', 'viewer'].map((r) => h('option', { value: r, selected: r === c.role }, r)))
    role.onchange = async () => {
      try {
        const r = await patch(`/courses/${courseId}/collaborators/${encodeURIComponent(c.clerk_id)}`, { role: role.value })
        c.role = r.role
        msg.textContent = `${name} is now ${r.role}.`
      } catch (e) { role.value = c.role; msg.textContent = errorText(e) }
    }
    // first press asks, a second one within 5 s removes (no dialog)
    const label = h('span', 'Remove')
    const remove = h('button.small', { type: 'button', 'data-testid': 'remove-collaborator' }, label, h('span.sr-only', ` ${name}`))
    let armed = null
    remove.onclick = async () => {
      if (!armed) {
        label.textContent = 'Really remove?'
        armed = setTimeout(() => { armed = null; label.textContent = 'Remove' }, 5000)
        return
      }
      clearTimeout(armed); armed = null
      try {
        await del(`/courses/${courseId}/collaborators/${encodeURIComponent(c.clerk_id)}`)
        msg.textContent = `${name} was removed; an editor they have open turns read-only.`
        await load()
        list.querySelector('select, button')?.focus()
      } catch (e) { msg.textContent = errorText(e) }
    }
    return h('li.row', { dataset: { clerk: c.clerk_id }, 'data-testid': 'collaborator' },
      h('strong', name), c.name ? h('small.muted', c.clerk_id) : null, role, remove)
  }

  function addForm () {
    const who = h('input', { required: true, placeholder: 'clerk id, e.g. user_bob', 'aria-label': 'Collaborator clerk id' })
    const role = h('select', { 'aria-label': 'Role' }, h('option', { value: 'editor' }, 'editor'), h('option', { value: 'viewer' }, 'viewer'))
    return h('form.row', {
      onsubmit: async (e) => {
        e.preventDefault()
        try {
          const c = await post(`/courses/${courseId}/collaborators`, { clerk_id: who.value.trim(), role: role.value })
          msg.textContent = `${c.name || c.clerk_id} is now ${c.role}.`
          who.value = ''
          await load()
        } catch (err) { msg.textContent = errorText(err) }
      }
    }, who, role, h('button', { type: 'submit' }, 'Add collaborator'))
  }

  load()
  return box
}

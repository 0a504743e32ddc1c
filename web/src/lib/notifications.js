// Notification lists: the bell's panel and the /notifications page share them; the user channel
// prepends new items and marks read ones in every open list.
import { h, clear } from './dom.js'
import { get, post } from './api.js'
import { errorText } from './errors.js'
import { showError } from './toast.js'
import { timeAgo } from './format.js'

export async function fillNotifications (box, compact) {
  const list = h('ul.notifs')
  const readAll = h('button', { type: 'button', onclick: async () => { try { await post('/notifications/read-all') } catch (e) { showError(e) } } }, 'Mark all read')
  clear(box, h('div.panel-head', h('h2', 'Notifications'), readAll, compact ? h('a', { href: '/notifications' }, 'All') : null), list)
  try {
    const page = await get('/notifications?limit=20')
    if (!page.items.length) list.append(h('li.muted', 'Nothing yet.'))
    for (const n of page.items) list.append(notifItem(n))
  } catch (e) { list.append(h('li.error', errorText(e))) }
}

export function notifLink (n) {
  const m = n.metadata || {}
  if (typeof m.link === 'string' && m.link.startsWith('/') && !m.link.startsWith('//')) return m.link
  if (m.post_id) return `/threads/${m.post_id}`
  if (m.lesson_id) return `/lessons/${m.lesson_id}`
  if (m.course_id) return `/courses/${m.course_id}`
  if (n.type === 'achievement' || n.type === 'goal_completed') return '/me'
  return null
}

export function notifItem (n) {
  const link = notifLink(n)
  const li = h('li.notif', { dataset: { id: n.id }, class: n.read_at ? 'read' : 'unread' },
    h('div', link ? h('a', { href: link }, n.title) : h('strong', n.title), n.body ? h('div.muted', n.body) : null, h('small.muted', timeAgo(n.created_at))),
    n.read_at ? null : h('button.small', { type: 'button', onclick: async () => { try { await post(`/notifications/${n.id}/read`) } catch (e) { showError(e) } } }, 'Mark read'))
  return li
}

export function markReadInDom (ids) {
  for (const li of document.querySelectorAll('li.notif')) {
    if (ids === 'all' || ids.includes(li.dataset.id)) {
      li.classList.remove('unread'); li.classList.add('read')
      li.querySelector('button')?.remove()
    }
  }
}

// The page header: brand and navigation, the live-updates dot, the notification bell and its panel,
// and the signed-in session's user channel (unread count, toasts, events for the pages).
import { h, clear } from './dom.js'
import { auth } from './auth.js'
import { get } from './api.js'
import { live } from './live.js'
import { toast } from './toast.js'
import { state, navigate } from './router.js'
import { fillNotifications, notifLink, notifItem, markReadInDom } from './notifications.js'

const top = document.getElementById('top')

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

export function renderHeader () {
  const nav = h('nav', { 'aria-label': 'Main' },
    h('a.brand', { href: '/' }, 'Scriptorium'),
    h('a', { href: '/' }, 'Catalogue'),
    auth.signedIn ? h('a', { href: '/me' }, 'Me') : null,
    auth.signedIn ? h('a', { href: '/my-work' }, 'My work') : null)
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

export function closePanel () {
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

/** After a sign-in (or at boot with a session): who am I, the header, the /ws client, my channel. */
export async function afterSignIn () {
  state.me = await get('/me').catch(() => null)
  renderHeader()
  live.start()
  startUserChannel()
}

// Small shared helpers: DOM building, the REST client, auth (dev tokens or Clerk), the /ws live client, toasts.

/** h('div.card', {onclick}, child, ...) — builds elements without innerHTML. */
export function h(tag, attrs, ...children) {
  const [head, ...classes] = tag.split('.')
  const [name, id] = head.split('#')
  const el = document.createElement(name || 'div')
  if (id) el.id = id
  if (classes.length) el.className = classes.join(' ')
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs)
    attrs = null
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2).toLowerCase(), v)
    else if (k === 'class') el.className += (el.className ? ' ' : '') + v
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k in el && typeof v !== 'string') el[k] = v
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
}

export function clear(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

export function fmtTime(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  return isNaN(d) ? String(iso) : d.toLocaleString()
}

export function timeAgo(iso) {
  const s = (Date.now() - new Date(iso).getTime()) / 1000
  if (!isFinite(s)) return ''
  if (s < 60) return 'just now'
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`
  return new Date(iso).toLocaleDateString()
}

// --- events -------------------------------------------------------------------------------

export class Emitter {
  constructor () { this.handlers = new Map() }
  on (name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set())
    this.handlers.get(name).add(fn)
    return () => this.handlers.get(name).delete(fn)
  }
  emit (name, ...args) { for (const fn of [...(this.handlers.get(name) || [])]) fn(...args) }
}

// --- auth ---------------------------------------------------------------------------------

const STORE = 'scriptorium.session'

class Auth extends Emitter {
  constructor () {
    super()
    this.mode = 'dev'
    this.session = null // {sub, name, token, expires_at}
    this.clerk = null
    this.timer = null
  }

  get token () { return this.session?.token || null }
  get signedIn () { return !!this.session?.token }

  async init () {
    try {
      const cfg = await (await fetch('/api/config')).json()
      this.mode = cfg.auth_mode === 'clerk' && cfg.clerk_publishable_key ? 'clerk' : 'dev'
      this.publishableKey = cfg.clerk_publishable_key
    } catch { this.mode = 'dev' }
    if (this.mode === 'clerk') return this.initClerk()
    try { this.session = JSON.parse(localStorage.getItem(STORE) || 'null') } catch { this.session = null }
    if (this.session) {
      if (this.expiresInMs() < 60_000) await this.refresh().catch(() => this.signOut())
      else this.schedule()
    }
    window.addEventListener('storage', (e) => {
      if (e.key !== STORE) return
      const next = JSON.parse(e.newValue || 'null')
      const changedUser = next?.sub !== this.session?.sub
      this.session = next
      if (changedUser) location.reload()
      else { this.schedule(); this.emit('token', this.token) }
    })
  }

  async initClerk () {
    // Clerk's script is loaded only in this mode, from the instance's frontend API.
    const key = this.publishableKey
    const frontendApi = atob(key.split('_')[2] || '').replace(/\$$/, '')
    await new Promise((resolve, reject) => {
      const s = document.createElement('script')
      s.src = `https://${frontendApi}/npm/@clerk/clerk-js@5/dist/clerk.browser.js`
      s.async = true
      s.crossOrigin = 'anonymous'
      s.dataset.clerkPublishableKey = key
      s.onload = resolve
      s.onerror = () => reject(new Error('Could not load Clerk'))
      document.head.append(s)
    })
    this.clerk = window.Clerk
    await this.clerk.load()
    const pull = async () => {
      const token = this.clerk.session ? await this.clerk.session.getToken() : null
      const changed = token !== this.session?.token
      this.session = token ? { sub: this.clerk.user?.id, name: this.clerk.user?.fullName, token } : null
      if (changed) this.emit('token', token)
    }
    await pull()
    this.clerk.addListener(() => pull())
    setInterval(pull, 45_000)
  }

  mountClerkSignIn (el) { this.clerk?.mountSignIn(el) }

  expiresInMs () {
    const exp = this.session?.expires_at
    if (!exp) return Infinity
    const ms = typeof exp === 'number' ? exp * 1000 : Date.parse(exp)
    return ms - Date.now()
  }

  schedule () {
    clearTimeout(this.timer)
    if (this.mode !== 'dev' || !this.session) return
    const wait = Math.max(5_000, this.expiresInMs() - 120_000)
    this.timer = setTimeout(() => this.refresh().catch(() => this.schedule()), Math.min(wait, 2 ** 31 - 1))
  }

  async devSignIn (name, sub) {
    sub = sub || 'user_' + (name.trim().toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '') || 'guest')
    const res = await fetch('/api/dev/token', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub, name: name.trim() })
    })
    if (!res.ok) throw await problem(res)
    const body = await res.json()
    this.session = { sub, name: name.trim(), token: body.token, expires_at: body.expires_at }
    localStorage.setItem(STORE, JSON.stringify(this.session))
    this.schedule()
    this.emit('token', this.token)
  }

  async refresh () {
    if (this.mode === 'clerk') {
      const token = await this.clerk?.session?.getToken({ skipCache: true })
      if (token) { this.session = { ...this.session, token }; this.emit('token', token) }
      return
    }
    if (!this.session) return
    await this.devSignIn(this.session.name || this.session.sub, this.session.sub)
  }

  signOut () {
    clearTimeout(this.timer)
    this.session = null
    localStorage.removeItem(STORE)
    if (this.clerk) this.clerk.signOut()
    this.emit('token', null)
  }
}

export const auth = new Auth()

// --- REST ---------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor (status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

async function problem (res) {
  let body = null
  try { body = await res.json() } catch { /* not JSON */ }
  return new ApiError(res.status, body)
}

export async function api (method, path, body) {
  const go = async () => {
    const headers = {}
    if (auth.token) headers.authorization = `Bearer ${auth.token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    return fetch('/api' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  }
  let res = await go()
  if (res.status === 401 && auth.signedIn) {
    await auth.refresh().catch(() => {})
    res = await go()
  }
  if (!res.ok) throw await problem(res)
  if (res.status === 204) return null
  const type = res.headers.get('content-type') || ''
  return type.includes('json') ? res.json() : res.text()
}
export const get = (p) => api('GET', p)
export const post = (p, b = {}) => api('POST', p, b)
export const put = (p, b) => api('PUT', p, b)
export const patch = (p, b) => api('PATCH', p, b)
export const del = (p) => api('DELETE', p)

/** Every item of a keyset-paginated list (bounded). */
export async function getAll (path, maxPages = 10) {
  const items = []
  let cursor = null
  let last = null
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?'
    last = await get(path + (cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ''))
    items.push(...(last.items || []))
    cursor = last.next_cursor
    if (!cursor) break
  }
  return { items, last }
}

export const qs = (params) => {
  const u = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v)
  const s = u.toString()
  return s ? '?' + s : ''
}

// --- live events over /ws -----------------------------------------------------------------

/** One /ws socket for the page: subscriptions resume with `since` after a drop, no gap, no duplicate. */
class Live extends Emitter {
  constructor () {
    super()
    this.ws = null
    this.channels = new Map() // channel -> {since, handlers:Set}
    this.status = 'offline'
    this.retry = 0
    this.pinger = null
    this.stopped = true
  }

  wsUrl () {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    return `${proto}//${location.host}/ws?token=${encodeURIComponent(auth.token || '')}`
  }

  start () {
    this.stopped = false
    if (!this.ws && auth.token) this.open()
  }

  restart () { // new token: reconnect with it (subscriptions resume with since)
    if (this.ws) { const ws = this.ws; this.ws = null; ws.onclose = null; ws.close(1000) }
    clearInterval(this.pinger)
    if (!this.stopped && auth.token) this.open()
    else this.setStatus('offline')
  }

  setStatus (s) { this.status = s; this.emit('status', s) }

  open () {
    this.setStatus(this.retry ? 'reconnecting' : 'connecting')
    const ws = new WebSocket(this.wsUrl())
    this.ws = ws
    ws.onopen = () => {
      this.retry = 0
      this.setStatus('live')
      for (const [channel, sub] of this.channels) this.sendSubscribe(channel, sub)
      clearInterval(this.pinger)
      this.pinger = setInterval(() => this.send({ type: 'ping' }), 20_000)
    }
    ws.onmessage = (e) => {
      let msg
      try { msg = JSON.parse(e.data) } catch { return }
      this.dispatch(msg)
    }
    ws.onclose = (e) => {
      clearInterval(this.pinger)
      if (this.ws !== ws) return
      this.ws = null
      if (this.stopped) { this.setStatus('offline'); return }
      if (e.code === 4401) { // token expired: fetch a fresh one, then resume
        this.setStatus('reconnecting')
        auth.refresh().catch(() => {}).finally(() => setTimeout(() => this.ws || this.open(), 300))
        return
      }
      this.retry++
      this.setStatus('reconnecting')
      setTimeout(() => { if (!this.ws && !this.stopped) this.open() }, Math.min(10_000, 250 * 2 ** this.retry))
    }
  }

  send (obj) {
    if (this.ws?.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(obj)); return true }
    return false
  }

  sendSubscribe (channel, sub) {
    const frame = { type: 'subscribe', channel }
    if (sub.since !== null && sub.since !== undefined) frame.since = sub.since
    this.send(frame)
  }

  dispatch (msg) {
    const sub = msg.channel ? this.channels.get(msg.channel) : null
    if (msg.type === 'event' && sub) {
      if (msg.id !== undefined && msg.id !== null) {
        if (sub.since !== null && sub.since !== undefined && compareIds(msg.id, sub.since) <= 0) return // duplicate
        sub.since = msg.id
      }
      for (const fn of sub.handlers) fn(msg.event, msg.data, msg)
    } else if (msg.type === 'subscribed' && sub) {
      if (sub.since === null || sub.since === undefined) sub.since = msg.last_id
    } else if (msg.type === 'reset' && sub) {
      sub.since = null
      for (const fn of sub.handlers) fn('reset', null, msg)
    } else if (msg.type === 'error') {
      if (sub) for (const fn of sub.handlers) fn('error', msg, msg)
      this.emit('error', msg)
    }
  }

  /** Subscribe `handler(event, data)` to a channel; `since` = last_event_id from REST. Returns unsubscribe. */
  subscribe (channel, since, handler) {
    let sub = this.channels.get(channel)
    if (!sub) {
      sub = { since: since ?? null, handlers: new Set() }
      this.channels.set(channel, sub)
      sub.handlers.add(handler)
      this.sendSubscribe(channel, sub)
    } else {
      sub.handlers.add(handler)
    }
    return () => {
      sub.handlers.delete(handler)
      if (!sub.handlers.size) {
        this.channels.delete(channel)
        this.send({ type: 'unsubscribe', channel })
      }
    }
  }

  typing (channel) { this.send({ type: 'typing', channel }) }
}

function compareIds (a, b) {
  const na = Number(a); const nb = Number(b)
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb
  const sa = String(a); const sb = String(b)
  if (sa.length !== sb.length) return sa.length - sb.length
  return sa < sb ? -1 : sa > sb ? 1 : 0
}

export const live = new Live()
auth.on('token', () => live.restart())

// --- toasts -------------------------------------------------------------------------------

/** A toast in the polite live region: never takes focus, dismissible, leaves after a while. */
export function toast (title, body, { href, kind = 'info', timeout = 8000 } = {}) {
  const box = document.getElementById('toasts')
  const close = h('button.toast-close', { type: 'button', 'aria-label': 'Dismiss notification', onclick: () => el.remove() }, '×')
  const text = href
    ? h('a.toast-title', { href, 'data-link': '' }, title)
    : h('strong.toast-title', title)
  const el = h('div.toast.' + kind, { 'data-testid': 'toast' }, h('div.toast-text', text, body ? h('div.toast-body', body) : null), close)
  box.append(el)
  if (timeout) setTimeout(() => el.remove(), timeout)
  return el
}

export function errorText (err) {
  if (err instanceof ApiError) {
    const fields = (err.body.errors || []).map((e) => `${(e.loc || []).join('.')}: ${e.msg}`).join('; ')
    return `${err.message}${fields ? ' — ' + fields : ''}`
  }
  return err?.message || String(err)
}

export function showError (err) { toast('Something went wrong', errorText(err), { kind: 'error' }) }

export function stars (avg, count) {
  if (avg === null || avg === undefined) return h('span.rating.muted', 'No ratings yet')
  const r = Math.round(Number(avg) * 2) / 2
  return h('span.rating', { title: `${Number(avg).toFixed(2)} out of 5` },
    h('span', { 'aria-hidden': 'true' }, '★'.repeat(Math.floor(r)) + (r % 1 ? '½' : '') + '☆'.repeat(5 - Math.ceil(r))),
    h('span.sr-only', `Rated ${Number(avg).toFixed(1)} out of 5`),
    ` ${Number(avg).toFixed(1)} (${count ?? 0})`)
}

export const userName = (u) => u?.name || u?.user_name || u?.author_name || u?.clerk_id || u?.user_id || 'Someone'

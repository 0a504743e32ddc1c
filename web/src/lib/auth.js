// Auth: dev tokens (POST /api/dev/token, kept in localStorage) or Clerk.
import { Emitter } from './emitter.js'
import { problem } from './errors.js'

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

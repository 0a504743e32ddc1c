// Live events over /ws.
import { Emitter } from './emitter.js'
import { auth } from './auth.js'

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

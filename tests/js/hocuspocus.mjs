// The stock @hocuspocus/provider (npm, unchanged) against Scriptorium's WS /collab, driven by
// tests/collab/test_hocuspocus_js.py.
// usage: node hocuspocus.mjs MODE SERVER_WS_URL JSON_ARGS
// Prints one JSON line per step on stdout; lines on stdin are the test's go-aheads ("next").
//   coedit  {lesson, token, text, wait: [markers]}: authenticated, synced, types `text` at the end
//           of the body, "saved" once the server acknowledged it, "saw" once every marker is in.
//   viewer  {lesson, token, text}: authenticated (scope), types `text`, "refused" when the server
//           answers its update with sync status 0; then waits for "next" and prints the body.
//   ywebsocket {lesson, token, text, wait}: the same as coedit with a stock y-websocket client on
//           /collab/lessons/{id} (no "saved": y-websocket has no acknowledgement).
//   denied  {lesson, token, name?}: "failed" with the provider's onAuthenticationFailed reason.
//   many    {lessons, token}: two sockets (A and B), each with one provider per lesson; every
//           provider types; "converged" once all see both; after "next", A's first provider is
//           destroyed and the others type again: "still-open" once all of B's see A's new text.
import * as Y from 'yjs'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as readline from 'node:readline'

const [mode, url, raw] = process.argv.slice(2)
const args = JSON.parse(raw)
const say = obj => process.stdout.write(JSON.stringify(obj) + '\n')
const until = (pred, ms, what) => new Promise((resolve, reject) => {
  const t0 = Date.now()
  const tick = () => pred() ? resolve() : (Date.now() - t0 > ms ? reject(new Error('timeout: ' + what())) : setTimeout(tick, 10))
  tick()
})
const lines = readline.createInterface({ input: process.stdin })
const pending = []
lines.on('line', line => { const next = pending.shift(); if (next) next(line) })
const nextLine = () => new Promise(resolve => pending.push(resolve))
const socket = () => new HocuspocusProviderWebsocket({ url: url + '/collab', WebSocketPolyfill: WebSocket })

function open (websocketProvider, lesson, token, extra = {}) {
  const doc = new Y.Doc()
  const state = { doc, scope: null, failed: null, statuses: [] }
  state.provider = new HocuspocusProvider({
    websocketProvider,
    name: 'lesson:' + lesson,
    document: doc,
    token,
    onAuthenticated: ({ scope }) => { state.scope = scope },
    onAuthenticationFailed: ({ reason }) => { state.failed = reason },
    onMessage: ({ message }) => {
      // sync status (8) answers are not surfaced by the provider: read them off the raw message
      const data = new Uint8Array(message.data)
      let pos = 0
      const varUint = () => { let n = 0; let shift = 0; let b; do { b = data[pos++]; n += (b & 127) * 2 ** shift; shift += 7 } while (b >= 128); return n }
      const size = varUint()
      pos += size
      const type = varUint()
      if (type === 8) state.statuses.push(varUint())
    },
    ...extra
  })
  state.provider.attach()
  state.body = () => doc.getText('body').toString()
  return state
}

async function main () {
  if (mode === 'coedit') {
    const s = open(socket(), args.lesson, args.token)
    await until(() => s.scope !== null && s.provider.synced, 10000, () => JSON.stringify({ scope: s.scope, failed: s.failed }))
    say({ event: 'synced', scope: s.scope, title: s.doc.getText('title').toString(), body: s.body() })
    const body = s.doc.getText('body')
    body.insert(body.length, args.text)
    await until(() => !s.provider.hasUnsyncedChanges, 10000, () => 'unsynced ' + s.provider.unsyncedChanges)
    say({ event: 'saved', statuses: s.statuses })
    await until(() => args.wait.every(m => s.body().includes(m)), 15000, () => s.body())
    say({ event: 'saw', body: s.body() })
    s.provider.destroy()
  } else if (mode === 'ywebsocket') {
    const doc = new Y.Doc()
    const provider = new WebsocketProvider(url + '/collab/lessons', args.lesson, doc, {
      params: { token: args.token }, WebSocketPolyfill: WebSocket, disableBc: true
    })
    const text = () => doc.getText('body').toString()
    await until(() => provider.synced, 10000, () => 'not synced')
    say({ event: 'synced', body: text() })
    doc.getText('body').insert(doc.getText('body').length, args.text)
    await until(() => args.wait.every(m => text().includes(m)), 15000, text)
    say({ event: 'saw', body: text() })
    provider.destroy()
  } else if (mode === 'viewer') {
    const s = open(socket(), args.lesson, args.token)
    // synced, and its step 2 (what it had) acknowledged as applied: nothing unsynced
    await until(() => s.scope !== null && s.provider.synced && !s.provider.hasUnsyncedChanges, 10000,
      () => JSON.stringify({ scope: s.scope, failed: s.failed, statuses: s.statuses }))
    say({ event: 'synced', scope: s.scope, body: s.body() })
    const before = s.statuses.length
    const body = s.doc.getText('body')
    body.insert(0, args.text)
    await until(() => s.statuses.length > before, 10000, () => JSON.stringify(s.statuses))
    say({ event: 'refused', status: s.statuses[before], unsynced: s.provider.unsyncedChanges })
    await nextLine()
    await until(() => args.wait.every(m => s.body().includes(m)), 15000, () => s.body())
    say({ event: 'body', body: s.body() })
    s.provider.destroy()
  } else if (mode === 'denied') {
    const s = open(socket(), args.lesson, args.token, args.name ? { name: args.name } : {})
    await until(() => s.failed !== null || s.scope !== null, 10000, () => 'no answer')
    say({ event: s.failed !== null ? 'failed' : 'authenticated', reason: s.failed, scope: s.scope })
    s.provider.destroy()
  } else if (mode === 'many') {
    const a = socket()
    const b = socket()
    const as = args.lessons.map(l => open(a, l, args.token))
    const bs = args.lessons.map(l => open(b, l, args.token))
    const all = [...as, ...bs]
    await until(() => all.every(s => s.scope === 'read-write' && s.provider.synced), 20000,
      () => all.filter(s => !s.provider.synced).length + ' not synced; failed: ' + all.map(s => s.failed).filter(Boolean).join(','))
    as.forEach((s, i) => s.doc.getText('body').insert(0, `[A${i}]`))
    bs.forEach((s, i) => s.doc.getText('body').insert(0, `[B${i}]`))
    const both = (s, i) => s.body().includes(`[A${i}]`) && s.body().includes(`[B${i}]`)
    await until(() => as.every(both) && bs.every(both), 20000, () => as.concat(bs).filter((s, i) => !both(s, i % as.length)).length + ' behind')
    await until(() => all.every(s => !s.provider.hasUnsyncedChanges), 20000, () => 'unsynced')
    say({ event: 'converged', bodies: bs.map(s => s.body()) })
    await nextLine()
    as[0].provider.destroy()
    as.slice(1).forEach((s, i) => s.doc.getText('body').insert(0, `[again${i + 1}]`))
    await until(() => bs.slice(1).every((s, i) => s.body().includes(`[again${i + 1}]`)), 20000, () => 'again missing')
    await until(() => as.slice(1).every(s => !s.provider.hasUnsyncedChanges), 20000, () => 'unsynced again')
    bs[0].doc.getText('body').insert(0, '[B0-after]')
    await until(() => !bs[0].provider.hasUnsyncedChanges, 20000, () => 'B0 unsynced')
    say({ event: 'still-open', a0: as[0].body(), b0: bs[0].body(), bodies: bs.map(s => s.body()) })
    as.slice(1).concat(bs).forEach(s => s.provider.destroy())
    a.destroy()
    b.destroy()
  } else {
    throw new Error('unknown mode ' + mode)
  }
  process.exit(0)
}

main().catch(err => { say({ event: 'error', message: String(err && err.message) }); process.exit(1) })

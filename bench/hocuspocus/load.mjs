// Collab fan-out load over the Hocuspocus protocol (shared/bench/collab_load.mjs adapted to its
// wire format: every message carries its document name; auth first; sync status acks).
// S sockets each open the same D documents (lesson:<id> names); the first W sockets write a Y.Map
// "ts" entry stamped with Date.now() every 1000/R ms (on schedule, below), cycling over the documents; every other
// socket measures send->apply latency from its map observers.
// usage: node load.mjs URL DOCS_JSON S W R SECONDS TOKEN|TOKENS_JSON
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'

const [url, docsJson, S, W, R, SECS, token] = process.argv.slice(2)
const names = JSON.parse(docsJson)
const s = +S; const w = +W; const rate = +R; const secs = +SECS
// TOKEN: one token for every socket, or a JSON array of them (socket i sends tokens[i % length])
const tokens = (token || '').startsWith('[') ? JSON.parse(token) : [token || 'bench']
const lat = []
let received = 0; let lastAt = 0; let syncFrames = 0; let errors = 0; let denied = 0; let acks = 0; let timeouts = 0
const closes = []
const frame = (name, type, write) => {
  const e = encoding.createEncoder()
  encoding.writeVarString(e, name)
  encoding.writeVarUint(e, type)
  write(e)
  return encoding.toUint8Array(e)
}

function mkSocket (i) {
  return new Promise(resolve => {
    const ws = new WebSocket(url)
    ws.binaryType = 'arraybuffer'
    const send = m => { if (ws.readyState === 1) ws.send(m) }
    const docs = new Map()
    let authed = 0
    let synced = false
    for (const name of names) {
      const doc = new Y.Doc()
      docs.set(name, doc)
      doc.on('update', (u, origin) => {
        if (origin === ws) return
        send(frame(name, 0, e => syncProtocol.writeUpdate(e, u)))
      })
      doc.getMap('ts').observe(ev => {
        if (!synced) return
        const now = Date.now()
        for (const key of ev.keysChanged) {
          if (!key.startsWith(i + ':')) { lat.push(now - doc.getMap('ts').get(key)); received++; lastAt = now }
        }
      })
    }
    const done = () => { synced = true; resolve({ ws, docs, i }) }
    ws.on('open', () => {
      for (const [name, doc] of docs) {
        send(frame(name, 2, e => { encoding.writeVarUint(e, 0); encoding.writeVarString(e, tokens[i % tokens.length]) }))
        send(frame(name, 0, e => syncProtocol.writeSyncStep1(e, doc)))
      }
    })
    ws.on('message', data => {
      const bytes = new Uint8Array(data)
      if (bytes.length === 1) { if (bytes[0] === 9) send(Uint8Array.of(10)); return }
      const dec = decoding.createDecoder(bytes)
      const name = decoding.readVarString(dec)
      const type = decoding.readVarUint(dec)
      const doc = docs.get(name)
      if (!doc) return
      if (type === 0 || type === 4) {
        if (synced) syncFrames++
        const e = encoding.createEncoder()
        encoding.writeVarString(e, name)
        encoding.writeVarUint(e, 0)
        const before = encoding.length(e)
        syncProtocol.readSyncMessage(dec, e, doc, ws)
        if (encoding.length(e) > before + 1) send(encoding.toUint8Array(e))
      } else if (type === 2) {
        const sub = decoding.readVarUint(dec)
        if (sub === 2) { if (++authed === docs.size) setTimeout(done, 300) } else if (sub === 1) { denied++; resolve(null) }
      } else if (type === 8) {
        acks++
      }
    })
    ws.on('error', () => { errors++; resolve(null) })
    ws.on('close', code => { if (!synced) { closes.push(code); resolve(null) } })
    setTimeout(() => { if (!synced) { timeouts++; ws.close(); resolve(null) } }, 120000)
  })
}

const sockets = []
for (let i = 0; i < s; i++) sockets.push(await mkSocket(i))
const live = sockets.filter(Boolean)
console.log(JSON.stringify({ phase: 'load' })) // every socket is in: the runner samples server CPU here
const t0 = Date.now()
const cpu0 = process.cpuUsage()
// Each writer keeps to its schedule: R*SECONDS updates, the k-th due at t0 + offset + k/R s, the
// writers' offsets spread over one period (as independent typists are); a timer that fires late
// sends what is due at once. Every server gets the same load: a setInterval re-armed from when it
// fired drifted by the generator's lateness and sent fewer updates to whichever server left the
// generator less CPU (timerLateMs: the mean lateness of a send).
const lateness = []
let sent = 0
const perDoc = new Map(names.map(n => [n, 0]))
const period = 1000 / rate
const total = Math.round(rate * secs)
await Promise.all(live.slice(0, w).map((c, idx) => new Promise(resolve => {
  let next = c.i % names.length
  let due = t0 + period * (1 + idx / w)
  let left = total
  const tick = () => {
    const now = Date.now()
    while (left > 0 && due <= now) {
      lateness.push(now - due)
      due += period
      left--
      const name = names[next]; next = (next + 1) % names.length
      perDoc.set(name, perDoc.get(name) + 1)
      c.docs.get(name).getMap('ts').set(`${c.i}:${sent++}`, Date.now())
    }
    if (left === 0) resolve()
    else setTimeout(tick, Math.max(0, due - Date.now()))
  }
  setTimeout(tick, due - Date.now())
})))
const cpu = process.cpuUsage(cpu0)
await new Promise(resolve => setTimeout(resolve, 1500))
lat.sort((a, b) => a - b)
const p = q => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : -1
const expected = sent * (live.length - 1)
const converged = live.every(c => names.every(n => c.docs.get(n).getMap('ts').size === perDoc.get(n)))
console.log(JSON.stringify({
  sockets: live.length, documents: names.length, errors, denied, timeouts, closes, sent, acks, expected, received, syncFrames,
  lost: expected - received, converged, p50: p(0.5), p99: p(0.99), max: p(1),
  // from the first send to the last delivery: a server that falls behind stretches the span
  deliveredPerSec: lastAt > t0 ? Math.round(received / ((lastAt - t0) / 1000)) : 0, elapsed: (Date.now() - t0) / 1000,
  generatorLoadCpu: Math.round((cpu.user + cpu.system) / 1e4) / 100,
  timerLateMs: lateness.length ? Math.round(10 * lateness.reduce((a, b) => a + b, 0) / lateness.length) / 10 : null
}))
live.forEach(c => c.ws.close())
process.exit(0)

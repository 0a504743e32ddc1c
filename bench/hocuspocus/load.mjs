// Collab fan-out load over the Hocuspocus protocol (shared/bench/collab_load.mjs adapted to its
// wire format: every message carries its document name; auth first; sync status acks).
// S sockets each open the same D documents (lesson:<id> names); the first W sockets write a Y.Map
// "ts" entry stamped with Date.now() every 1000/R ms (on schedule, below), cycling over the documents; every other
// socket measures send->apply latency from its map observers.
// usage: node load.mjs URL DOCS_JSON S W R SECONDS TOKEN|TOKENS_JSON
//
// The generator must not be what it measures. One Node thread applying every delivery to a Y.Doc
// was saturated on a 2-core machine (9-11 s of CPU in a 10 s load), and its own queue set the tail
// latency of whichever server it measured (p99 28-356 ms between rounds of one server, following
// how late its timers fired). So, for both servers alike:
// - once synced, an update is decoded (Y.decodeUpdate; each distinct update once per thread, as
//   every reader of a broadcast gets the same bytes), not applied: each new "ts" key is a
//   delivery, timed from its value, and counted once per socket and document (a Set, as a Y.Map
//   ignores an update it already has). A struct that arrives before an earlier clock of its
//   writer (which Yjs would hold back as pending) is counted in `gaps`, which must be 0 (a
//   writer's own updates are not counted: servers send them back only inside merged ones). The last
//   socket still applies every update to its Y.Docs: `verified` is that its maps hold every entry
//   with nothing pending, so each server's updates (merged or not) integrate in Yjs. A profile put
//   ~27 % of the generator's busy time in Yjs building two state vectors per applied update (50
//   writers: 50 clients per document). LOAD_APPLY=1 applies every update on every socket.
// - the sockets are spread over LOAD_THREADS worker threads (default 1; socket i in thread i % T).
//   Two threads ran unsaturated but took more CPU in all, which the servers then lacked.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'

const [url, docsJson, S, W, R, SECS, token] = isMainThread ? process.argv.slice(2) : workerData.args
const names = JSON.parse(docsJson)
const s = +S; const w = +W; const rate = +R; const secs = +SECS
const period = 1000 / rate
const total = Math.round(rate * secs)
const APPLY = process.env.LOAD_APPLY === '1'

if (isMainThread) await main()
else await worker(workerData.k, workerData.threads)

async function main () {
  const threads = Math.max(1, Math.min(s, +(process.env.LOAD_THREADS || 1)))
  const workers = []
  for (let k = 0; k < threads; k++) workers.push(new Worker(new URL(import.meta.url), { workerData: { args: process.argv.slice(2), k, threads } }))
  const next = (wk, type) => new Promise((resolve, reject) => {
    const on = m => { if (m.type === type) { wk.off('message', on); resolve(m) } }
    wk.on('message', on)
    wk.once('error', reject)
  })
  const ready = await Promise.all(workers.map(wk => next(wk, 'ready')))
  console.log(JSON.stringify({ phase: 'load' })) // every socket is in: the runner samples server CPU here
  const t0 = Date.now()
  const cpu0 = process.cpuUsage() // the process's, every thread's
  const written = workers.map(wk => next(wk, 'written'))
  workers.forEach(wk => wk.postMessage({ type: 'start', t0 }))
  const writes = await Promise.all(written)
  const cpu = process.cpuUsage(cpu0)
  await new Promise(resolve => setTimeout(resolve, 1500))
  const reports = workers.map(wk => next(wk, 'report'))
  workers.forEach(wk => wk.postMessage({ type: 'report' }))
  const parts = await Promise.all(reports)
  const perDoc = new Map(names.map(n => [n, 0]))
  for (const wr of writes) for (const [n, c] of wr.perDoc) perDoc.set(n, perDoc.get(n) + c)
  const sent = writes.reduce((a, wr) => a + wr.sent, 0)
  const live = ready.reduce((a, r) => a + r.live, 0)
  const sum = key => parts.reduce((a, p) => a + p[key], 0)
  const lat = new Int32Array(sum('count'))
  let at = 0
  for (const p of parts) { lat.set(p.lat.subarray(0, p.count), at); at += p.count }
  lat.sort()
  const p = q => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : -1
  const received = sum('received')
  const lastAt = Math.max(0, ...parts.map(x => x.lastAt))
  const expected = sent * (live - 1)
  // every socket's copy of every document has every entry
  const converged = parts.every(x => x.sizes.every(sizes => names.every((n, d) => sizes[d] === perDoc.get(n))))
  const lateness = writes.reduce((a, wr) => a + wr.lateSum, 0)
  const lateCount = writes.reduce((a, wr) => a + wr.lateCount, 0)
  console.log(JSON.stringify({
    sockets: live, documents: names.length, threads, apply: parts[0]?.apply ?? null, gaps: sum('gaps'),
    verified: parts.some(x => x.verified === false) ? false : parts.some(x => x.verified === true) ? true : null, errors: sum('errors'), denied: sum('denied'), timeouts: sum('timeouts'),
    closes: parts.flatMap(x => x.closes), sent, acks: sum('acks'), expected, received, syncFrames: sum('syncFrames'),
    lost: expected - received, converged, p50: p(0.5), p99: p(0.99), max: p(1),
    // from the first send to the last delivery: a server that falls behind stretches the span
    deliveredPerSec: lastAt > t0 ? Math.round(received / ((lastAt - t0) / 1000)) : 0, elapsed: (Date.now() - t0) / 1000,
    generatorLoadCpu: Math.round((cpu.user + cpu.system) / 1e4) / 100,
    timerLateMs: lateCount ? Math.round(10 * lateness / lateCount) / 10 : null
  }))
  process.exit(0) // the workers' sockets with it
}

async function worker (k, threads) {
  // TOKEN: one token for every socket, or a JSON array of them (socket i sends tokens[i % length])
  const tokens = (token || '').startsWith('[') ? JSON.parse(token) : [token || 'bench']
  let lat = new Int32Array(1 << 16)
  let count = 0
  const record = ms => {
    if (count === lat.length) { const grown = new Int32Array(lat.length * 2); grown.set(lat); lat = grown }
    lat[count++] = ms
  }
  let gaps = 0; let verified = null
  let received = 0; let lastAt = 0; let syncFrames = 0; let errors = 0; let denied = 0; let acks = 0; let timeouts = 0
  const closes = []
  const frame = (name, type, write) => {
    const e = encoding.createEncoder()
    encoding.writeVarString(e, name)
    encoding.writeVarUint(e, type)
    write(e)
    return encoding.toUint8Array(e)
  }

  // Every reader of a broadcast gets the same bytes: each distinct update is decoded once per
  // thread (keyed by its bytes), and each socket then does its own bookkeeping over the result.
  const decoded = new Map()
  let decodedBytes = 0
  const decode = update => {
    const bytes = Buffer.from(update.buffer, update.byteOffset, update.byteLength).toString('latin1')
    let structs = decoded.get(bytes)
    if (structs === undefined) {
      structs = []
      for (const struct of Y.decodeUpdate(update).structs) {
        if (struct instanceof Y.Skip) continue // a hole in a merged update: not data
        const key = typeof struct.parentSub === 'string' ? struct.parentSub : null
        structs.push({ client: struct.id.client, clock: struct.id.clock, length: struct.length, key, value: key === null ? 0 : struct.content.getContent()[0] })
      }
      if (decoded.size >= 8192 || decodedBytes >= 64 << 20) { decoded.clear(); decodedBytes = 0 }
      decoded.set(bytes, structs)
      decodedBytes += bytes.length
    }
    return structs
  }

  function mkSocket (i) {
    return new Promise(resolve => {
      const ws = new WebSocket(url)
      ws.binaryType = 'arraybuffer'
      const send = m => { if (ws.readyState === 1) ws.send(m) }
      const docs = new Map()
      const seen = new Map(names.map(n => [n, new Set()])) // "ts" keys this socket has, per document
      const next = new Map(names.map(n => [n, new Map()])) // per document: writer -> next clock expected
      const apply = APPLY || i === s - 1 // the verifier applies too
      const own = i + ':'
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
          if (!synced || !APPLY) return
          const now = Date.now()
          for (const key of ev.keysChanged) {
            if (!key.startsWith(i + ':')) { record(now - doc.getMap('ts').get(key)); received++; lastAt = now }
          }
        })
      }
      const see = (name, update) => { // a delivery: its new keys, decoded, not applied
        const keys = seen.get(name)
        const clocks = next.get(name)
        const ownClient = docs.get(name).clientID
        const now = Date.now()
        for (const { client, clock, length, key, value } of decode(update)) {
          if (client === ownClient) continue // a writer gets its own updates back only inside merged ones
          const expected = clocks.get(client) ?? 0 // (the documents are empty before the load)
          if (clock > expected) gaps++
          if (clock + length > expected) clocks.set(client, clock + length)
          if (key === null || keys.has(key)) continue
          keys.add(key)
          if (!key.startsWith(own)) { record(now - value); received++; lastAt = now }
        }
      }
      const done = () => { synced = true; resolve({ ws, docs, seen, i }) }
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
          if (synced && !APPLY) {
            const at = dec.pos
            if (decoding.readVarUint(dec) === syncProtocol.messageYjsUpdate) {
              const update = decoding.readVarUint8Array(dec)
              see(name, update)
              if (apply) Y.applyUpdate(doc, update, ws)
              return
            }
            dec.pos = at
          }
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

  // the main thread's messages, each awaited by its type (one listener: none is missed)
  const inbox = new Map(['start', 'report'].map(type => { let resolve; const p = new Promise(r => { resolve = r }); return [type, { p, resolve }] }))
  parentPort.on('message', m => inbox.get(m.type)?.resolve(m))
  const sockets = []
  for (let i = k; i < s; i += threads) sockets.push(await mkSocket(i))
  const live = sockets.filter(Boolean)
  parentPort.postMessage({ type: 'ready', live: live.length })
  const { t0 } = await inbox.get('start').p
  // Each writer keeps to its schedule: R*SECONDS updates, the k-th due at t0 + offset + k/R s, the
  // writers' offsets spread over one period (as independent typists are); a timer that fires late
  // sends what is due at once. Every server gets the same load: a setInterval re-armed from when it
  // fired drifted by the generator's lateness and sent fewer updates to whichever server left the
  // generator less CPU (timerLateMs: the mean lateness of a send).
  let lateSum = 0; let lateCount = 0
  let sent = 0
  const perDoc = new Map(names.map(n => [n, 0]))
  await Promise.all(live.filter(c => c.i < w).map(c => new Promise(resolve => {
    let next = c.i % names.length
    let due = t0 + period * (1 + c.i / w)
    let left = total
    const tick = () => {
      const now = Date.now()
      while (left > 0 && due <= now) {
        lateSum += now - due; lateCount++
        due += period
        left--
        const name = names[next]; next = (next + 1) % names.length
        perDoc.set(name, perDoc.get(name) + 1)
        const key = `${c.i}:${sent++}`
        c.seen.get(name).add(key)
        c.docs.get(name).getMap('ts').set(key, Date.now())
      }
      if (left === 0) resolve()
      else setTimeout(tick, Math.max(0, due - Date.now()))
    }
    setTimeout(tick, due - Date.now())
  })))
  parentPort.postMessage({ type: 'written', sent, perDoc: [...perDoc], lateSum, lateCount })
  await inbox.get('report').p
  const verifier = live.find(c => c.i === s - 1)
  if (verifier && !APPLY) {
    verified = names.every(n => {
      const doc = verifier.docs.get(n)
      return doc.getMap('ts').size === verifier.seen.get(n).size && doc.store.pendingStructs === null && doc.store.pendingDs === null
    })
  }
  parentPort.postMessage({
    type: 'report', lat, count, received, gaps, verified, lastAt, syncFrames, errors, denied, acks, timeouts, closes,
    sizes: live.map(c => names.map(n => APPLY ? c.docs.get(n).getMap('ts').size : c.seen.get(n).size)),
    apply: APPLY
  })
}

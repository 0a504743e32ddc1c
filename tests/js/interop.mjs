// A stock y-websocket WebsocketProvider against Scriptorium, driven by tests/test_collab_js.py.
// usage: node interop.mjs SERVER_WS_URL LESSON_ID TOKEN
// Prints one JSON line per step on stdout; reads nothing.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [serverUrl, lessonId, token] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(serverUrl + '/collab/lessons', lessonId, doc, {
  params: { token }, WebSocketPolyfill: WebSocket, disableBc: true
})
const say = obj => process.stdout.write(JSON.stringify(obj) + '\n')
const texts = () => ({ title: doc.getText('title').toString(), body: doc.getText('body').toString() })
const peers = () => [...provider.awareness.getStates().entries()]
  .filter(([id]) => id !== doc.clientID).map(([, s]) => s)
const until = (pred, ms) => new Promise((resolve, reject) => {
  const t0 = Date.now()
  const tick = () => pred() ? resolve() : (Date.now() - t0 > ms ? reject(new Error('timeout: ' + JSON.stringify({ ...texts(), peers: peers() }))) : setTimeout(tick, 20))
  tick()
})
provider.on('connection-close', ev => say({ event: 'closed', code: ev && ev.code }))
try {
  await until(() => provider.synced, 10000)
  say({ event: 'synced', ...texts() })
  provider.awareness.setLocalStateField('user', { name: 'js' })
  const body = doc.getText('body')
  body.insert(body.length, ' + JS ✓')
  await until(() => texts().body.includes('PY') && peers().some(s => s.user && s.user.name === 'py'), 10000)
  say({ event: 'saw-python', ...texts(), peers: peers() })
  await until(() => !peers().some(s => s.user && s.user.name === 'py'), 10000)
  say({ event: 'python-left', ...texts() })
  provider.destroy()
  process.exit(0)
} catch (err) {
  say({ event: 'error', message: String(err && err.message) })
  process.exit(1)
}

// A stock y-websocket client holding a cursor (a Yjs relative position) while the server restores
// a version and accepts a suggestion; driven by tests/test_collab_edits_js.py.
// usage: node cursor.mjs SERVER_WS_URL LESSON_ID TOKEN ANCHOR EXPECTED_BODIES_JSON
// Prints one JSON line per step on stdout: ready, then one "seen" per expected body.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [serverUrl, lessonId, token, anchor, expectedJson] = process.argv.slice(2)
const expected = JSON.parse(expectedJson)
const doc = new Y.Doc()
const provider = new WebsocketProvider(serverUrl + '/collab/lessons', lessonId, doc, {
  params: { token }, WebSocketPolyfill: WebSocket, disableBc: true
})
const say = obj => process.stdout.write(JSON.stringify(obj) + '\n')
const body = doc.getText('body')
const until = (pred, ms) => new Promise((resolve, reject) => {
  const t0 = Date.now()
  const tick = () => pred() ? resolve() : (Date.now() - t0 > ms ? reject(new Error('timeout: ' + body.toString())) : setTimeout(tick, 20))
  tick()
})
let deleted = 0
body.observe(event => { for (const op of event.delta) if (op.delete) deleted += op.delete })
try {
  await until(() => provider.synced, 10000)
  const cursor = Y.createRelativePositionFromTypeIndex(body, body.toString().indexOf(anchor))
  say({ event: 'ready', body: body.toString() })
  for (const text of expected) {
    await until(() => body.toString() === text, 10000)
    const at = Y.createAbsolutePositionFromRelativePosition(cursor, doc)
    const now = body.toString()
    say({ event: 'seen', body: now, at_anchor: now.slice(at.index, at.index + anchor.length), deleted })
  }
  provider.destroy()
  process.exit(0)
} catch (err) {
  say({ event: 'error', message: String(err && err.message) })
  process.exit(1)
}

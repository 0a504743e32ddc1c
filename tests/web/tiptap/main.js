// A Tiptap editor on a Scriptorium lesson over the Hocuspocus protocol (WS /collab), for
// tests/web/test_web_tiptap.py. Built into tiptap.bundle.js by ./build (esbuild, from tests/js's
// npm packages); index.html?ws=WS_BASE&lesson=LESSON_ID&token=JWT loads it.
//
// The lesson body is Markdown in a Y.Text "body" (what the app's CodeMirror editor binds), while
// Tiptap's Collaboration extension binds a Y.XmlFragment (ProseMirror nodes). The page keeps both:
// Tiptap + Collaboration edit a fragment of a page-local Y.Doc, and a small bridge mirrors that
// fragment and the lesson's "body" both ways as plain text, one paragraph a line (the minimal
// common-prefix/suffix change each way, so concurrent edits elsewhere in the body are kept).
// The fragment stays local so that two Tiptap tabs never both translate one change.
import { Editor } from '@tiptap/core'
import Document from '@tiptap/extension-document'
import Paragraph from '@tiptap/extension-paragraph'
import Text from '@tiptap/extension-text'
import Collaboration from '@tiptap/extension-collaboration'
import * as Y from 'yjs'
import { HocuspocusProvider } from '@hocuspocus/provider'

const params = new URLSearchParams(location.search)
const shared = new Y.Doc()
const body = shared.getText('body')
const local = new Y.Doc()
const status = document.querySelector('#status')
const state = { scope: null, failed: null, synced: false }
window.tiptapState = state

const provider = new HocuspocusProvider({
  url: params.get('ws') + '/collab',
  name: 'lesson:' + params.get('lesson'),
  document: shared,
  token: params.get('token'),
  onAuthenticated: ({ scope }) => { state.scope = scope },
  onAuthenticationFailed: ({ reason }) => { state.failed = reason; status.textContent = 'Refused: ' + reason },
  onSynced: ({ state: synced }) => {
    if (synced && !state.synced) {
      state.synced = true
      toEditor()
      status.textContent = 'Live (' + state.scope + ')'
    }
  }
})

const editor = new Editor({
  element: document.querySelector('#editor'),
  extensions: [Document, Paragraph, Text, Collaboration.configure({ fragment: local.getXmlFragment('tiptap') })]
})
window.tiptapEditor = editor
window.tiptapProvider = provider

const editorText = () => editor.state.doc.textBetween(0, editor.state.doc.content.size, '\n')

// The smallest change turning `from` into `to`: [start, removed length, inserted text].
function diff (from, to) {
  let start = 0
  while (start < from.length && start < to.length && from[start] === to[start]) start++
  let end = 0
  while (end < from.length - start && end < to.length - start &&
         from[from.length - 1 - end] === to[to.length - 1 - end]) end++
  return [start, from.length - start - end, to.slice(start, to.length - end)]
}

// A plain-text offset as a ProseMirror position (paragraph i starts after i line breaks).
function position (offset) {
  let pos = 1
  let left = offset
  for (let i = 0; i < editor.state.doc.childCount; i++) {
    const size = editor.state.doc.child(i).content.size
    if (left <= size) return pos + left
    left -= size + 1
    pos += size + 2
  }
  return editor.state.doc.content.size - 1
}

let applying = false

function toEditor () {
  const [start, removed, inserted] = diff(editorText(), body.toString())
  if (removed === 0 && inserted === '') return
  const tr = editor.state.tr
  const from = position(start)
  tr.delete(from, position(start + removed))
  let pos = from
  inserted.split('\n').forEach((line, index) => {
    if (index > 0) { tr.split(pos); pos += 2 }
    if (line) { tr.insertText(line, pos); pos += line.length }
  })
  applying = true
  try { editor.view.dispatch(tr) } finally { applying = false }
}

function toBody () {
  if (!state.synced) return
  const [start, removed, inserted] = diff(body.toString(), editorText())
  if (removed === 0 && inserted === '') return
  shared.transact(() => {
    if (removed) body.delete(start, removed)
    if (inserted) body.insert(start, inserted)
  }, 'tiptap')
}

editor.on('update', () => { if (!applying) toBody() })
body.observe(event => { if (event.transaction.origin !== 'tiptap' && state.synced) toEditor() })

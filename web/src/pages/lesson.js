// The lesson page: live co-editing (Yjs over /collab), suggestion mode, suggestions panel, history.
// Loaded lazily: it carries CodeMirror, Yjs and y-websocket.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { EditorState, StateField, StateEffect, Compartment } from '@codemirror/state'
import { EditorView, keymap, Decoration, drawSelection, placeholder } from '@codemirror/view'
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands'
import { markdownLanguage } from '@codemirror/lang-markdown'
import { syntaxHighlighting, defaultHighlightStyle } from '@codemirror/language'
import { marked } from 'marked'
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, put } from '../lib/api.js'
import { ApiError, errorText } from '../lib/errors.js'
import { toast, showError } from '../lib/toast.js'
import { timeAgo, fmtTime } from '../lib/format.js'
import { state, onLeave } from '../lib/router.js'
import { previewToggle } from './lesson-layout.js'
import { announceProgress, onProgress } from '../lib/progress.js'
import { mySuggestionsBox } from './mywork-suggestions.js'
import { enhanceMedia, lessonPlayer, mediaUploader } from './media.js'

const MSG_SAVED = 100 // collab protocol extension (see collab/protocol.py)
const MSG_QUERY_SAVED = 101

// white cursor labels sit on these: each is at least 5.4:1 against white
const COLORS = ['#c92a2a', '#2f6f3e', '#1864ab', '#b34700', '#862e9c', '#0b7285', '#a61e4d', '#3f6212']
const colorFor = (s) => { let x = 0; for (const c of s || '') x = (x * 31 + c.charCodeAt(0)) >>> 0; return COLORS[x % COLORS.length] }

// --- safe Markdown preview ----------------------------------------------------------------

const ALLOWED = new Set(['P', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'UL', 'OL', 'LI', 'A', 'EM', 'STRONG', 'CODE', 'PRE', 'BLOCKQUOTE', 'HR', 'BR', 'IMG', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'DEL', 'SPAN'])
const ATTRS = { A: ['href', 'title'], IMG: ['src', 'alt', 'title'] }
const safeUrl = (u) => /^(https?:|mailto:|\/|#|\.)/i.test(u.trim()) || !/^[a-z][a-z0-9+.-]*:/i.test(u.trim())

export function sanitizeInto (target, html) {
  const tpl = document.createElement('template')
  tpl.innerHTML = html
  const walk = (node) => {
    for (const el of [...node.children]) {
      if (!ALLOWED.has(el.tagName)) { el.replaceWith(document.createTextNode(el.textContent)); continue }
      for (const a of [...el.attributes]) {
        const ok = (ATTRS[el.tagName] || []).includes(a.name) && (!['href', 'src'].includes(a.name) || safeUrl(a.value))
        if (!ok) el.removeAttribute(a.name)
      }
      if (el.tagName === 'A') el.setAttribute('rel', 'noopener noreferrer')
      walk(el)
    }
  }
  walk(tpl.content)
  target.replaceChildren(tpl.content)
}

const renderMarkdown = (target, src) => { sanitizeInto(target, marked.parse(src || '', { async: false, gfm: true })); enhanceMedia(target) }

// code points <-> UTF-16 offsets (the API counts code points, CodeMirror UTF-16 units)
const cpLen = (s) => { let n = 0; for (const _ of s) n++; return n }
const utf16At = (text, cp) => { let i = 0; let n = 0; for (const ch of text) { if (n === cp) return i; i += ch.length; n++ } return i }

// --- suggestion highlights ----------------------------------------------------------------

const setMarks = StateEffect.define()
const marksField = StateField.define({
  create: () => Decoration.none,
  update (value, tr) {
    value = value.map(tr.changes)
    for (const e of tr.effects) if (e.is(setMarks)) value = e.value
    return value
  },
  provide: (f) => EditorView.decorations.from(f)
})

function makeEditor (parent, { ytext, awareness, undo, readOnly, doc, single, label, testid }) {
  const editable = new Compartment()
  const extensions = [
    drawSelection(),
    EditorView.lineWrapping,
    marksField,
    // read-only keeps the text focusable, so keyboard users can move and select (to suggest an edit)
    editable.of(EditorState.readOnly.of(readOnly)),
    EditorView.contentAttributes.of({ 'aria-label': label, 'data-testid': testid, 'aria-readonly': String(readOnly) })
  ]
  if (!single) extensions.push(markdownLanguage, syntaxHighlighting(defaultHighlightStyle, { fallback: true }), placeholder(readOnly ? '' : 'Write the lesson in Markdown…'))
  if (single) extensions.push(EditorState.transactionFilter.of((tr) => (tr.newDoc.lines > 1 ? [] : tr)))
  if (ytext) {
    extensions.push(yCollab(ytext, awareness, { undoManager: undo }))
    extensions.push(keymap.of([...yUndoManagerKeymap, ...defaultKeymap]))
  } else {
    extensions.push(history(), keymap.of([...defaultKeymap, ...historyKeymap]))
  }
  const view = new EditorView({ parent, state: EditorState.create({ doc: ytext ? ytext.toString() : (doc || ''), extensions }) })
  view.setReadOnly = (ro) => view.dispatch({ effects: editable.reconfigure(EditorState.readOnly.of(ro)) })
  return view
}

// --- the page -----------------------------------------------------------------------------

export default async function lessonPage (main, id) {
  const lesson = await get(`/lessons/${id}`)
  const access = auth.signedIn ? await get(`/lessons/${id}/access`).catch(() => ({ role: 'member' })) : { role: 'anonymous' }
  if (!main.isConnected) return // left the page while it loaded: open no sockets
  const courseId = access.course_id || lesson.course_id
  const canEdit = !!access.can_edit
  const isViewer = access.role === 'viewer'
  const useCollab = auth.signedIn && (canEdit || isViewer)
  const canSuggest = auth.signedIn && !canEdit
  const me = { name: state.me?.name || auth.session?.name || 'Me', clerk: state.me?.clerk_id || auth.session?.sub }

  const connEl = h('span.conn', { 'data-testid': 'conn-status', role: 'status' }, useCollab ? 'Connecting…' : 'Read-only')
  const savedEl = h('span.saved', { 'data-testid': 'saved', 'aria-live': 'polite' })
  const presenceEl = h('ul.presence', { 'aria-label': 'People here', 'data-testid': 'presence' })
  const titleHost = h('div.title-editor')
  const bodyHost = h('div.body-editor')
  const preview = h('div.preview.prose', { 'aria-label': 'Preview', 'data-testid': 'preview' })
  const side = h('aside.side')
  const roleText = canEdit ? 'You can edit' : isViewer ? 'Viewer: read-only, you may suggest edits' : auth.signedIn ? 'Read-only: select text to suggest an edit' : 'Read-only'

  const grid = h('div.lesson-grid',
    h('div.lesson-main',
      h('section.editor-col', { 'aria-label': 'Lesson source' }, titleHost, bodyHost),
      h('section#lesson-preview.preview-col', { 'aria-label': 'Rendered lesson' }, preview)),
    side)
  clear(main,
    h('h1.sr-only', `Lesson: ${lesson.title}`),
    h('p', courseId ? h('a', { href: `/courses/${courseId}` }, '← Course') : null),
    h('div.editor-bar', h('span.pill', { 'data-testid': 'role' }, roleText), connEl, savedEl, presenceEl,
      previewToggle(grid, { readOnly: !canEdit })),
    grid)

  let titleView, bodyView, doc, provider, ytitle, ybody
  const cleanups = []
  onLeave(() => cleanups.forEach((f) => f()))

  const currentText = (field) => (field === 'title' ? titleView : bodyView).state.doc.toString()

  if (useCollab) {
    doc = new Y.Doc()
    ytitle = doc.getText('title')
    ybody = doc.getText('body')
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    provider = new WebsocketProvider(`${proto}//${location.host}/collab/lessons`, id, doc, { params: { token: auth.token } })
    const color = colorFor(me.clerk)
    provider.awareness.setLocalStateField('user', { name: me.name, color, colorLight: color + '33', id: me.clerk })
    const undo = new Y.UndoManager([ytitle, ybody])
    titleView = makeEditor(titleHost, { ytext: ytitle, awareness: provider.awareness, undo, readOnly: !canEdit, single: true, label: 'Lesson title', testid: 'title-editor' })
    bodyView = makeEditor(bodyHost, { ytext: ybody, awareness: provider.awareness, undo, readOnly: !canEdit, label: 'Lesson body (Markdown)', testid: 'body-editor' })
    cleanups.push(() => { provider.destroy(); doc.destroy(); titleView.destroy(); bodyView.destroy() })

    // connection state, "reconnecting" banner
    let everConnected = false
    provider.on('status', ({ status }) => {
      if (status === 'connected') { everConnected = true; connEl.textContent = 'Live'; connEl.dataset.state = 'live' } else {
        connEl.textContent = everConnected ? 'Reconnecting… your edits are kept and will merge' : 'Connecting…'
        connEl.dataset.state = 'reconnecting'
      }
      updateSaved()
    })
    provider.on('sync', (synced) => { if (synced) { renderPreview(); updateSaved() } })
    provider.on('closed', (event) => {
      if (event.code === 4401) {
        auth.refresh().catch(() => {}).finally(() => { provider.params.token = auth.token; provider.connect() })
      } else {
        connEl.textContent = event.code === 4403 ? 'You may not edit this lesson.' : event.code === 4404 ? 'This lesson is gone.' : `Closed (${event.code})`
        connEl.dataset.state = 'closed'
        if (event.code === 4403 || event.code === 4404) accessLost(event.code) // e.g. removed as a collaborator
      }
    })
    // The room re-checks rights every few seconds (collab/access.py): a collaborator removed (or a
    // course gone) has their socket closed with 4403/4404. The editor turns read-only, says why, and
    // keeps the text as it was; nothing typed after this point could be saved.
    // A demoted editor (now a viewer) stays connected and the room drops their writes without a
    // word, so while this tab may edit it re-reads its access every 8 s (while visible).
    let notice = null
    const readOnlyNow = (text) => {
      titleView.setReadOnly(true)
      bodyView.setReadOnly(true)
      main.querySelector('[data-testid="role"]').textContent = 'Read-only'
      if (!notice) { notice = h('p.notice.error', { role: 'alert', 'data-testid': 'access-lost' }); main.querySelector('.editor-bar').after(notice) }
      notice.textContent = text
      savedEl.textContent = ''
    }
    const accessLost = (code) => {
      clearInterval(recheck)
      provider.disconnect()
      readOnlyNow(code === 4404
        ? 'You can no longer see this lesson (your access was removed or the lesson was deleted). The editor is read-only.'
        : 'Your editing access to this lesson was removed. The editor is read-only now.')
    }
    const recheck = canEdit ? setInterval(async () => {
      if (document.hidden) return
      const now = await get(`/lessons/${id}/access`).catch(() => null)
      if (now && !now.can_edit) {
        clearInterval(recheck)
        readOnlyNow(now.role === 'viewer' ? 'Your role changed to viewer: the editor is read-only now.' : 'You can no longer edit this lesson. The editor is read-only now.')
      }
    }, 8000) : null
    cleanups.push(() => clearInterval(recheck))
    cleanups.push(auth.on('token', (t) => {
      if (!t) return
      provider.params.token = t
      if (provider.wsconnected) { provider.disconnect(); provider.connect() } // reconnect with the new token
    }))

    // presence
    const renderPresence = () => {
      const items = []
      for (const [clientId, st] of provider.awareness.getStates()) {
        if (!st.user) continue
        const mine = clientId === doc.clientID
        items.push(h('li', { style: `--c:${st.user.color}` }, h('span.dot', { 'aria-hidden': 'true' }), st.user.name + (mine ? ' (you)' : '')))
      }
      clear(presenceEl, items)
    }
    provider.awareness.on('change', renderPresence)
    renderPresence()

    // preview + saved indicator
    let pt = null
    const renderPreview = () => renderMarkdown(preview, ybody.toString())
    ybody.observe(() => { clearTimeout(pt); pt = setTimeout(renderPreview, 150) })

    // "Saved" = the server has committed to PostgreSQL every change this tab sent. After local edits
    // the tab asks "saved? n" (message 101, after its updates on the same socket) and the server
    // answers "n" (message 100) once the batch holding them is committed. Anything typed after the
    // question keeps the state pending until the next answer; offline edits are asked about after
    // the reconnect's sync has sent them.
    let dirty = false
    let asked = 0
    let changedSinceAsk = false
    let askTimer = null
    const ask = () => {
      askTimer = null
      if (!provider.wsconnected || !provider.synced) return // asked again after the next sync
      const enc = encoding.createEncoder()
      encoding.writeVarUint(enc, MSG_QUERY_SAVED)
      encoding.writeVarUint(enc, ++asked)
      changedSinceAsk = false
      provider.ws.send(encoding.toUint8Array(enc))
    }
    provider.messageHandlers[MSG_SAVED] = (_encoder, decoder) => {
      if (decoding.readVarUint(decoder) === asked && !changedSinceAsk) { dirty = false; updateSaved() }
    }
    provider.on('sync', (synced) => { if (synced && dirty) ask() })
    doc.on('update', (_u, origin) => {
      if (origin === provider) return // came from the server
      dirty = true
      changedSinceAsk = true
      updateSaved()
      if (!askTimer) askTimer = setTimeout(ask, 200)
    })
    cleanups.push(() => clearTimeout(askTimer))
    function updateSaved () {
      if (!canEdit) { savedEl.textContent = ''; return }
      if (!provider.wsconnected) savedEl.textContent = dirty ? 'Offline — changes kept locally' : ''
      else savedEl.textContent = dirty ? 'Saving…' : 'Saved'
      savedEl.dataset.state = dirty ? 'pending' : 'saved'
    }
  } else {
    titleView = makeEditor(titleHost, { readOnly: true, single: true, doc: lesson.title, label: 'Lesson title', testid: 'title-editor' })
    bodyView = makeEditor(bodyHost, { readOnly: true, doc: lesson.content?.body || '', label: 'Lesson body (Markdown)', testid: 'body-editor' })
    cleanups.push(() => { titleView.destroy(); bodyView.destroy() })
    if (lesson.content?.html) { sanitizeInto(preview, lesson.content.html); enhanceMedia(preview) } else renderMarkdown(preview, lesson.content?.body)
  }
  titleHost.editorView = titleView // reachable from the DOM (tests, extensions)
  bodyHost.editorView = bodyView
  bodyHost.provider = provider
  if (canEdit && useCollab) bodyHost.before(mediaUploader(id, bodyView))
  lessonPlayer(lesson, async () => (await get(`/lessons/${id}/media`)).items).then((player) => { if (player && preview.isConnected) preview.before(player) })
  if (auth.signedIn) {
    const quizHost = h('div')
    main.append(quizHost)
    import('./quiz.js').then((m) => { if (quizHost.isConnected) quizHost.append(m.quizSection(id, { canEdit, courseId })) }).catch(() => {})
  }

  // --- suggestion mode (learners and viewers) --------------------------------------------
  let lastField = 'body'
  titleView.contentDOM.addEventListener('focus', () => { lastField = 'title' })
  bodyView.contentDOM.addEventListener('focus', () => { lastField = 'body' })
  if (access.role === 'learner') side.append(progressBox())
  const mySuggestions = canSuggest ? mySuggestionsBox(id) : null
  if (canSuggest) side.append(suggestBox(), mySuggestions)
  if (courseId) side.append(h('p', h('a', { href: `/courses/${courseId}#forum-h` }, 'Discuss this course in the forum')))

  function progressBox () {
    const box = h('section.box', h('h2', 'Your progress'))
    const btn = h('button.primary', { type: 'button', 'data-testid': 'complete-lesson' }, 'Mark lesson complete')
    const out = h('p', { role: 'status' })
    btn.onclick = async () => {
      try {
        const r = await put(`/lessons/${id}/progress`, { status: 'completed' })
        out.textContent = `Done. Course progress: ${Math.round(r.progress)}%`
        btn.disabled = true
        announceProgress({ courseId, lessonId: id, status: 'completed', progress: r.progress })
      } catch (e) { showError(e) }
    }
    get(`/courses/${courseId}/outline`).then(async (outline) => {
      const mine = outline.units.flatMap((u) => u.lessons).find((l) => l.id === id)
      if (mine?.status === 'completed') { btn.disabled = true; out.textContent = 'You completed this lesson.' } else if (!mine?.status || mine.status === 'not_started') await put(`/lessons/${id}/progress`, { status: 'in_progress' })
    }).catch(() => {})
    cleanups.push(onProgress(courseId, (c) => {
      if (c.lessonId === id && c.status === 'completed' && !btn.disabled) { btn.disabled = true; out.textContent = `You completed this lesson. Course progress: ${Math.round(c.progress)}%` }
    }))
    box.append(btn, out)
    return box
  }

  function suggestBox () {
    const box = h('section.box', { 'aria-labelledby': 'sg-h' })
    const picked = h('blockquote.picked', { 'data-testid': 'suggest-selection' })
    const replacement = h('textarea', { rows: 3, 'aria-label': 'Replacement text', 'data-testid': 'suggest-replacement' })
    const comment = h('textarea', { rows: 2, 'aria-label': 'Comment for the authors', 'data-testid': 'suggest-comment', placeholder: 'Why this change?' })
    const msg = h('p', { role: 'status' })
    let sel = null
    const pick = () => {
      const view = lastField === 'title' ? titleView : bodyView
      const r = view.state.selection.main
      const text = view.state.doc.toString()
      sel = { field: lastField, from: r.from, to: r.to, text, selected: text.slice(r.from, r.to) }
      picked.textContent = r.empty ? `(insert at position ${r.from} of the ${lastField})` : sel.selected
      replacement.value = sel.selected
      form.hidden = false
      replacement.focus()
    }
    const form = h('form.stack', {
      hidden: true,
      onsubmit: async (e) => {
        e.preventDefault()
        if (!sel) return
        msg.textContent = 'Sending…'
        try {
          const fresh = await get(`/lessons/${id}`)
          const stored = sel.field === 'title' ? fresh.title : (fresh.content?.body ?? '')
          let from = sel.from
          if (stored !== sel.text) { // our view is ahead of or behind the stored text: find the same span there
            const at = stored.indexOf(sel.selected, Math.max(0, from - 200))
            const alt = at >= 0 ? at : stored.indexOf(sel.selected)
            if (!sel.selected || alt < 0) throw new ApiError(409, { detail: 'The lesson changed while you were reading it.', current_text: stored })
            from = alt
          }
          const index = cpLen(stored.slice(0, from))
          const body = { field: sel.field, changes: [{ index, delete: cpLen(sel.selected), insert: replacement.value }], base_version: fresh.version, comment: comment.value }
          await post(`/lessons/${id}/suggested-edits`, body)
          msg.textContent = 'Suggestion sent. The authors have been notified.'
          form.hidden = true; comment.value = ''
          mySuggestions?.reload()
          toast('Suggestion sent', 'You will be notified when it is decided.')
        } catch (err) {
          if (err instanceof ApiError && err.status === 409) {
            msg.textContent = 'The lesson changed since you selected this text, so your suggestion could not be placed. The text has been refreshed: select the passage again and resend.'
            if (!useCollab && err.body.current_text !== undefined) {
              const v = sel.field === 'title' ? titleView : bodyView
              v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: err.body.current_text } })
            }
          } else msg.textContent = errorText(err)
        }
      }
    }, h('p', 'Replace:'), picked, h('label', 'With', replacement), h('label', 'Comment', comment),
    h('div.row', h('button.primary', { type: 'submit', 'data-testid': 'suggest-send' }, 'Send suggestion'), h('button.link', { type: 'button', onclick: () => { form.hidden = true } }, 'Cancel')))
    box.append(h('h2#sg-h', 'Suggest an edit'), h('p.muted', 'Select text in the title or body, then:'),
      h('button', { type: 'button', 'data-testid': 'suggest-start', onmousedown: (e) => e.preventDefault(), onclick: pick }, 'Suggest a change to the selection'), form, msg)
    return box
  }

  // --- open suggestions (editors) ----------------------------------------------------------
  if (canEdit) {
    const box = h('section.box', { 'aria-labelledby': 'os-h' })
    const list = h('ul.suggestions', { 'data-testid': 'suggestions' })
    box.append(h('h2#os-h', 'Open suggestions'), list)
    side.append(box)
    const highlight = (items) => {
      const ranges = []
      const text = bodyView.state.doc.toString()
      for (const s of items) {
        if ((s.field || 'body') !== 'body') continue
        for (const c of s.changes || []) {
          let from = utf16At(text, c.index)
          let to = utf16At(text, c.index + (c.delete || 0))
          if (c.original) { // the anchored text may have moved: take its occurrence nearest the original index
            let best = -1
            for (let at = text.indexOf(c.original); at >= 0; at = text.indexOf(c.original, at + 1)) {
              if (best < 0 || Math.abs(at - from) < Math.abs(best - from)) best = at
            }
            if (best >= 0) { from = best; to = best + c.original.length } else continue
          }
          if (from < to && to <= text.length) ranges.push(Decoration.mark({ class: 'cm-suggestion', attributes: { title: s.comment || 'Suggested edit' } }).range(from, to))
        }
      }
      ranges.sort((a, b) => a.from - b.from)
      bodyView.dispatch({ effects: setMarks.of(Decoration.set(ranges)) })
    }
    const load = async () => {
      try {
        const page = await get(`/lessons/${id}/suggested-edits?status=open&limit=50`)
        // keep the items already shown (and any message under them); add new ones, drop decided ones
        const shown = new Map([...list.querySelectorAll('li.suggestion')].map((li) => [li.dataset.id, li]))
        list.querySelector('li.muted, li.error')?.remove()
        const ids = new Set(page.items.map((s) => String(s.id)))
        for (const [sid, li] of shown) if (!ids.has(sid)) li.remove()
        for (const s of page.items) if (!shown.has(String(s.id))) list.append(suggestionItem(s))
        if (!page.items.length) list.append(h('li.muted', 'None open.'))
        highlight(page.items)
      } catch (e) { clear(list, h('li.error', errorText(e))) }
    }
    const suggestionItem = (s) => {
      const out = h('p.result', { role: 'status' })
      const decide = async (action) => {
        try {
          await post(`/suggested-edits/${s.id}/${action}`)
          toast(action === 'accept' ? 'Suggestion accepted' : 'Suggestion rejected', action === 'accept' ? 'The change is now in the lesson for everyone.' : '')
          load()
        } catch (err) {
          if (err instanceof ApiError && err.status === 409) {
            out.textContent = `Cannot apply: the text this suggestion targets was changed after it was proposed${err.body.current_text !== undefined ? ` (it now reads “${err.body.current_text}”)` : ''}. Reject it, or apply the idea by hand.`
          } else out.textContent = errorText(err)
        }
      }
      const changes = (s.changes || []).map((c) => h('div.change', c.delete ? h('del', c.original ?? `${c.delete} characters`) : null, c.insert ? h('ins', c.insert) : null))
      return h('li.suggestion', { 'data-testid': 'suggestion', dataset: { id: String(s.id) } },
        h('div', h('strong', s.user_name || s.user_id), h('small.muted', ` suggested on the ${s.field || 'body'} · `, h('time', { datetime: s.created_at, title: fmtTime(s.created_at) }, timeAgo(s.created_at)))),
        changes, s.comment ? h('p', s.comment) : null,
        h('div.row', h('button.primary.small', { type: 'button', onclick: () => decide('accept'), 'data-testid': 'accept' }, 'Accept'),
          h('button.small', { type: 'button', onclick: () => decide('reject'), 'data-testid': 'reject' }, 'Reject')), out)
    }
    await load()
    provider?.on('sync', (synced) => { if (synced) load() })
    const timer = setInterval(load, 15000)
    const onNotif = (e) => { if (e.detail?.type === 'suggestion') load() }
    document.addEventListener('scr:notification', onNotif)
    cleanups.push(() => { clearInterval(timer); document.removeEventListener('scr:notification', onNotif) })
  }

  // --- history -----------------------------------------------------------------------------
  if (canEdit || isViewer) side.append(historyBox())

  function historyBox () {
    const box = h('section.box', { 'aria-labelledby': 'hist-h' })
    const list = h('ul.versions', { 'data-testid': 'versions' })
    const view = h('div.version-view', { hidden: true, 'aria-live': 'polite' })
    const load = async () => {
      try {
        const page = await get(`/lessons/${id}/versions?limit=30`)
        clear(list)
        if (!page.items.length) list.append(h('li.muted', 'No versions yet (one is recorded when editing pauses).'))
        for (const v of page.items) {
          list.append(h('li', { dataset: { vid: v.id } }, h('button.link', { type: 'button', onclick: () => show(v) }, fmtTime(v.created_at)),
            h('small.muted', ` ${(v.contributors || []).join(', ')}`)))
        }
      } catch (e) { clear(list, h('li.error', errorText(e))) }
    }
    const show = async (v) => {
      try {
        const full = await get(`/lessons/${id}/versions/${v.id}`)
        const pv = h('div.prose')
        renderMarkdown(pv, full.body)
        clear(view, h('h3', `Version of ${fmtTime(full.created_at)}`), h('p', h('strong', full.title)), pv,
          h('div.row', canEdit ? h('button.primary', {
            type: 'button',
            onclick: async () => {
              try { await post(`/lessons/${id}/versions/${v.id}/restore`); toast('Version restored', 'Everyone connected sees the restored text.'); view.hidden = true; load() } catch (e) { showError(e) }
            }
          }, 'Restore this version') : null, h('button', { type: 'button', onclick: () => { view.hidden = true } }, 'Close')))
        view.hidden = false
        view.querySelector('button')?.focus()
      } catch (e) { showError(e) }
    }
    box.append(h('h2#hist-h', 'History'), h('button.small', { type: 'button', onclick: load }, 'Refresh'), list, view)
    load()
    return box
  }
}

// Media: uploads from the lesson editor (drop, paste or pick a file; a progress bar; the Markdown
// link goes in at the cursor through the editor, so the CRDT carries it to every co-editor),
// players for media in the preview and for video/audio lessons, and a course's media library.
import './media.css'
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { getAll, del } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { toast } from '../lib/toast.js'

const AUDIO = /\.(mp3|ogg|wav)$/i
const VIDEO = /\.(mp4|webm)$/i
const ACCEPT = 'image/png,image/jpeg,image/gif,image/webp,audio/mpeg,audio/ogg,audio/wav,video/mp4,video/webm,application/pdf'

export function fmtSize (n) {
  if (n === null || n === undefined) return '—'
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

const fileName = (url) => decodeURIComponent(String(url).split('?')[0].split('/').pop() || url)

// --- upload --------------------------------------------------------------------------------

/** POST one file to /api/lessons/{id}/media with upload progress; resolves the media, rejects with {status, detail}. */
export function uploadFile (lessonId, file, onProgress, retried = false) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', `/api/lessons/${lessonId}/media`)
    if (auth.token) xhr.setRequestHeader('authorization', `Bearer ${auth.token}`)
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total) }
    xhr.onerror = () => reject({ status: 0, detail: 'The connection failed.' })
    xhr.onload = () => {
      let body = null
      try { body = JSON.parse(xhr.responseText) } catch { /* not JSON */ }
      if (xhr.status === 201) { resolve(body); return }
      if (xhr.status === 401 && !retried && auth.signedIn) {
        auth.refresh().catch(() => {}).then(() => uploadFile(lessonId, file, onProgress, true)).then(resolve, reject)
        return
      }
      reject({ status: xhr.status, detail: body?.detail || body?.title || `HTTP ${xhr.status}` })
    }
    const form = new FormData()
    form.append('file', file, file.name)
    xhr.send(form)
  })
}

/** The Markdown for an uploaded file: an image inline, anything else a link (the preview plays audio and video). */
export function markdownFor (media, name) {
  const label = String(name || fileName(media.url)).replace(/[[\]\\\n]/g, ' ').trim() || 'file'
  return media.media_type === 'image' ? `![${label}](${media.url})` : `[${label}](${media.url})`
}

/**
 * Wire uploads into an editable CodeMirror view: drop and paste files on it, or pick them with the
 * returned toolbar's button. Returns the toolbar (button, progress bar, status line).
 */
export function mediaUploader (lessonId, view) {
  const input = h('input', { type: 'file', accept: ACCEPT, multiple: true, hidden: true, 'data-testid': 'media-input', tabindex: '-1', 'aria-hidden': 'true' })
  const pick = h('button.small', { type: 'button', 'data-testid': 'media-pick', onclick: () => input.click() }, 'Insert image, audio or video…')
  const bar = h('progress', { max: 100, value: 0, hidden: true, 'aria-label': 'Upload progress', 'data-testid': 'upload-progress' })
  const status = h('span.upload-status', { role: 'status', 'aria-live': 'polite', 'data-testid': 'upload-status' })
  const tools = h('div.row.media-tools', pick, input, bar, status)

  let queue = Promise.resolve()
  const uploadAll = (files, at) => {
    for (const file of files) {
      queue = queue.then(() => uploadOne(file, at)).catch(() => {})
      at = null // later files go after the first, at the cursor
    }
  }
  async function uploadOne (file, at) {
    bar.hidden = false
    bar.value = 0
    status.className = 'upload-status'
    status.textContent = `Uploading ${file.name}…`
    try {
      const media = await uploadFile(lessonId, file, (f) => { bar.value = Math.round(f * 100) })
      bar.value = 100
      const text = markdownFor(media, file.name)
      const pos = at ?? view.state.selection.main.head
      const before = pos > 0 ? view.state.doc.sliceString(pos - 1, pos) : '\n'
      const insert = (before === '\n' ? '' : '\n') + text + '\n'
      view.dispatch({ changes: { from: pos, insert }, selection: { anchor: pos + insert.length }, userEvent: 'input.paste' })
      status.textContent = `Added ${file.name}.`
    } catch (err) {
      status.className = 'upload-status error'
      const why = err?.status === 413 ? 'it is too large' : err?.status === 415 ? 'this type of file is not accepted' : null
      status.textContent = `${file.name} was not added${why ? `: ${why}` : ''}. ${err?.detail || errorText(err)}`
    } finally {
      bar.hidden = true
    }
  }

  input.addEventListener('change', () => { const files = [...input.files]; input.value = ''; uploadAll(files, null) })
  view.dom.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); view.dom.classList.add('drop-target') } })
  view.dom.addEventListener('dragleave', () => view.dom.classList.remove('drop-target'))
  view.dom.addEventListener('drop', (e) => {
    view.dom.classList.remove('drop-target')
    const files = [...(e.dataTransfer?.files || [])]
    if (!files.length) return
    e.preventDefault()
    e.stopPropagation()
    const at = view.posAtCoords({ x: e.clientX, y: e.clientY })
    uploadAll(files, at)
  }, true)
  view.dom.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])]
    if (!files.length) return
    e.preventDefault()
    e.stopPropagation()
    uploadAll(files, null)
  }, true)
  return tools
}

// --- players ---------------------------------------------------------------------------------

/** After the preview is rendered: a player under each link to an uploaded audio or video file. */
export function enhanceMedia (root) {
  for (const a of root.querySelectorAll('a[href^="/media/"]')) {
    const href = a.getAttribute('href')
    const kind = VIDEO.test(href) ? 'video' : AUDIO.test(href) ? 'audio' : null
    if (!kind || a.nextElementSibling?.dataset?.player === href) continue
    a.after(h(kind, { controls: true, preload: 'metadata', src: href, 'aria-label': `${kind === 'video' ? 'Video' : 'Audio'}: ${a.textContent}`, dataset: { player: href } }))
  }
}

/** The player of a video or audio lesson (`content.video_url` / `audio_url`, or its `media_id`), with a link to the file. */
export async function lessonPlayer (lesson, fetchMedia) {
  const c = lesson.content || {}
  const kind = lesson.content_type === 'audio' ? 'audio' : lesson.content_type === 'video' ? 'video' : null
  if (!kind) return null
  let url = kind === 'video' ? c.video_url : c.audio_url
  if (!url && c.media_id && fetchMedia) url = (await fetchMedia().catch(() => [])).find((m) => m.id === c.media_id)?.url
  if (!url) return null
  const playable = url.startsWith('/media/') || (kind === 'video' ? VIDEO : AUDIO).test(new URL(url, location.href).pathname)
  const label = kind === 'video' ? 'Watch the video' : 'Listen to the audio'
  return h('figure.lesson-player', { 'data-testid': 'lesson-player' },
    playable ? h(kind, { controls: true, preload: 'metadata', src: url, 'aria-label': `${lesson.title} (${kind})` }) : null,
    h('figcaption', h('a', { href: url, rel: 'noopener noreferrer' }, label)))
}

// --- a course's media library ---------------------------------------------------------------

export function mediaLibrary (courseId) {
  const box = h('section.box.media-library', { 'aria-labelledby': 'ml-h', 'data-testid': 'media-library' })
  const msg = h('p', { role: 'status', 'aria-live': 'polite' })
  const load = async () => {
    let items
    try { items = (await getAll(`/courses/${courseId}/media?limit=100`, 5)).items } catch (e) { clear(box, h('h2#ml-h', 'Media library'), h('p.error', errorText(e))); return }
    const list = h('ul.media-list')
    for (const m of items) {
      const name = fileName(m.url)
      const short = name.length > 16 ? `${name.slice(0, 8)}…${name.slice(name.lastIndexOf('.'))}` : name
      const used = m.used_in.length
        ? h('span.used-in', 'Used in ', m.used_in.map((l, i) => [i ? ', ' : '', h('a', { href: `/lessons/${l.id}` }, l.title)]))
        : h('span.used-in.muted', 'Not used in any lesson body')
      const actions = h('span.actions')
      const confirmDelete = () => {
        clear(actions, h('span', `Delete ${short}?`), ' ',
          h('button.small.danger', {
            type: 'button',
            onclick: async () => {
              try { await del(`/media/${m.id}`); toast('File deleted', m.used_in.length ? 'Lessons that link to it now show a broken link.' : ''); msg.textContent = `${short} deleted.`; load() } catch (e) { msg.textContent = errorText(e) }
            }
          }, 'Yes, delete'), ' ',
          h('button.small', { type: 'button', onclick: () => { drawActions(); actions.querySelector('button')?.focus() } }, 'Keep'))
        actions.querySelector('button')?.focus()
      }
      const drawActions = () => clear(actions, h('button.small', { type: 'button', 'aria-label': `Delete ${short}`, onclick: confirmDelete }, 'Delete'))
      drawActions()
      list.append(h('li', { 'data-testid': 'media-row', dataset: { id: m.id } },
        h('div.row', h('a', { href: m.url, rel: 'noopener noreferrer', title: name }, short),
          h('span.muted', `${m.mime_type || m.media_type} · ${fmtSize(m.size_bytes)} · added to `),
          h('a', { href: `/lessons/${m.lesson_id}` }, m.lesson_title)),
        h('div.row.spread', used, actions)))
    }
    clear(box, h('h2#ml-h', 'Media library'),
      items.length ? list : h('p.muted', 'No files yet. Drop an image, audio or video file into a lesson to add one.'),
      msg)
  }
  clear(box, h('h2#ml-h', 'Media library'), h('p.muted', 'Loading…'))
  load()
  return box
}

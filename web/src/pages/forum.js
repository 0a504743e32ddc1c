// A course's forum on the course page: its threads (pinned first, locked marked, live), a new-thread
// form, and search over posts and replies (GET /courses/{id}/forum/search, best match first).
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, qs } from '../lib/api.js'
import { live } from '../lib/live.js'
import { showError } from '../lib/toast.js'
import { errorText } from '../lib/errors.js'
import { authorOf } from '../lib/format.js'
import { navigate, onLeave } from '../lib/router.js'

export async function renderForum (box, courseId) {
  const list = h('ul.posts', { 'data-testid': 'posts' })
  const page = await get(`/courses/${courseId}/forum/posts?limit=30`)
  const item = (p) => h('li', { dataset: { id: p.id, pinned: String(!!p.is_pinned) } },
    p.is_pinned ? h('span.pill', 'Pinned') : null, p.is_pinned ? ' ' : null,
    h('a', { href: `/threads/${p.id}` }, p.title),
    p.is_locked ? [' ', h('span.pill.locked', 'Locked')] : null,
    h('small.muted', ` by ${authorOf(p)} · ${p.reply_count ?? 0} replies · ${p.like_count ?? 0} likes`))
  const addPost = (p, first) => {
    if (list.querySelector(`[data-id="${p.id}"]`)) return
    const li = item(p)
    // new threads go below the pinned ones
    const afterPinned = [...list.children].find((x) => x.dataset.pinned !== 'true')
    if (first && !p.is_pinned) list.insertBefore(li, afterPinned || null)
    else if (first) list.prepend(li)
    else list.append(li)
  }
  for (const p of page.items) addPost(p)
  if (auth.signedIn) {
    onLeave(live.subscribe(`course:${courseId}`, page.last_event_id ?? null, (ev, data) => {
      if (ev === 'post.created') addPost(data, true)
      else if (ev === 'post.updated') list.querySelector(`[data-id="${data.id}"]`)?.replaceWith(item(data))
      else if (ev === 'post.deleted') list.querySelector(`[data-id="${data.id}"]`)?.remove()
    }))
  }
  let form = null
  if (auth.signedIn) {
    const title = h('input', { required: true, name: 'title', placeholder: 'Title', 'aria-label': 'Post title' })
    const content = h('textarea', { required: true, name: 'content', rows: 3, placeholder: 'Ask or share something', 'aria-label': 'Post text' })
    form = h('form.stack', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { const p = await post(`/courses/${courseId}/forum/posts`, { title: title.value, content: content.value }); navigate(`/threads/${p.id}`) } catch (err) { showError(err) }
      }
    }, title, content, h('button', { type: 'submit' }, 'Start a thread'))
  }
  const threads = h('div', list, page.items.length ? null : h('p.muted', 'No threads yet.'))
  clear(box, h('h2#forum-h', 'Forum'), searchBox(courseId, threads), threads, form)
}

/** The search form; results replace the thread list until the search is cleared. */
function searchBox (courseId, threads) {
  const input = h('input', { type: 'search', name: 'q', maxlength: 200, 'aria-label': 'Search the forum', placeholder: 'Search posts and replies' })
  const results = h('div.search-results', { hidden: true, 'data-testid': 'forum-results' })
  const status = h('p', { role: 'status' })
  let q = ''
  const show = async (cursor, list) => {
    try {
      const page = await get(`/courses/${courseId}/forum/search${qs({ q, limit: 20, cursor })}`)
      if (!page.items.length && !cursor) status.textContent = `Nothing found for “${q}”.`
      else status.textContent = `${list.children.length + page.items.length} result${list.children.length + page.items.length === 1 ? '' : 's'} for “${q}”${page.next_cursor ? ' (more below)' : ''}.`
      for (const hit of page.items) list.append(hitItem(hit))
      results.querySelector('.more')?.remove()
      if (page.next_cursor) {
        const more = h('button.more', { type: 'button', onclick: () => show(page.next_cursor, list) }, 'More results')
        results.append(more)
      }
    } catch (e) { status.textContent = errorText(e) }
  }
  const clearSearch = () => { q = ''; input.value = ''; results.hidden = true; threads.hidden = false; status.textContent = ''; input.focus() }
  const form = h('form.row.forum-search', {
    role: 'search',
    'aria-label': 'Forum',
    onsubmit: async (e) => {
      e.preventDefault()
      q = input.value.trim()
      if (!q) { clearSearch(); return }
      const list = h('ul.posts.hits')
      clear(results, h('h3', 'Search results'), list, h('button.link', { type: 'button', onclick: clearSearch }, 'Back to all threads'))
      results.hidden = false
      threads.hidden = true
      status.textContent = 'Searching…'
      await show(null, list)
    }
  }, input, h('button', { type: 'submit' }, 'Search'))
  return h('div', form, status, results)
}

function hitItem (hit) {
  const href = hit.kind === 'reply' ? `/threads/${hit.post_id}#reply-${hit.reply_id}` : `/threads/${hit.post_id}`
  const snippet = h('p.snippet', hit.snippet.map((part) => (part.match ? h('mark', part.text) : part.text)))
  return h('li', { 'data-testid': 'forum-hit', dataset: { kind: hit.kind, id: hit.id } },
    h('a', { href }, hit.post_title), h('small.muted', hit.kind === 'reply' ? ` · reply by ${authorOf(hit)}` : ` · post by ${authorOf(hit)}`),
    snippet)
}

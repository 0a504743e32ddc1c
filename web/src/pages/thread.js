// A forum thread: the post, its nested replies, likes, edits and deletions, typing, all live; its
// author edits or deletes the post, course staff pin and lock it (a lock hides the reply box live).
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { get, post, put, del, patch, getAll } from '../lib/api.js'
import { live } from '../lib/live.js'
import { toast, showError } from '../lib/toast.js'
import { authorOf, timeAgo, fmtTime } from '../lib/format.js'
import { state, onLeave, render, navigate } from '../lib/router.js'

export default async function threadPage (main, id) {
  const postObj = await get(`/forum/posts/${id}`)
  const since = postObj.last_event_id ?? 0
  const [repliesPage, access] = await Promise.all([
    getAll(`/forum/posts/${id}/replies?limit=50`, 5),
    auth.signedIn ? get(`/courses/${postObj.course_id}/access`).catch(() => ({})) : Promise.resolve({})
  ])
  const me = state.me?.clerk_id || auth.session?.sub
  const staff = !!access.is_staff
  const tree = replyTree(id, me)
  for (const r of repliesPage.items) tree.add(r) // the top-level replies, oldest first, each with its subtree
  const postLike = likeButton('post', postObj, me)
  const typing = typingLine()
  const head = postHead(postObj, { me, staff, postLike })
  const form = auth.signedIn ? replyForm(id, null, tree.add) : null
  // a locked thread says so and takes no new replies (staff still may: server/forum/service.py)
  const lockedNote = h('p.notice', { role: 'status', 'data-testid': 'locked-note' })
  const setLocked = (locked) => {
    lockedNote.textContent = locked ? (staff ? 'This thread is locked: only course staff can reply.' : 'This thread is locked: no new replies.') : ''
    lockedNote.hidden = !locked
    if (form) form.hidden = locked && !staff
    tree.root.classList.toggle('locked', locked && !staff)
  }
  setLocked(postObj.is_locked)
  head.onChange = (p) => setLocked(p.is_locked)
  if (auth.signedIn) {
    onLeave(live.subscribe(`thread:${id}`, since, (ev, data) => {
      if (ev === 'reply.created') { tree.add(data); typing.stopped(data.author.clerk_id) }
      else if (ev === 'reply.updated') tree.update(data)
      else if (ev === 'reply.deleted') tree.update({ ...data, deleted_at: data.deleted_at || 'now' })
      else if (ev === 'thread.updated') head.update(data)
      else if (ev === 'post.liked') postLike.setCount(data.like_count)
      else if (ev === 'reply.liked') tree.setLikes(data.id, data.like_count)
      else if (ev === 'typing') { if (data.user_id !== me) typing.typing(data.user_id, data.name) }
      else if (ev === 'reset') render()
    }))
  }
  clear(main,
    h('p', h('a', { href: `/courses/${postObj.course_id}` }, '← Course')),
    head.el,
    h('section', { 'aria-label': 'Replies' }, h('h2', 'Replies'), lockedNote, tree.root, typing.el,
      auth.signedIn ? form : h('p', h('a', { href: '/signin?next=' + encodeURIComponent(location.pathname) }, 'Sign in'), ' to reply.')))
  const target = location.hash && document.getElementById(location.hash.slice(1))
  if (target) { target.classList.add('target'); target.scrollIntoView({ block: 'center' }) }
}

/** The post: title, badges, text; its author edits or deletes it; staff also lock and pin it. */
function postHead (p, { me, staff, postLike }) {
  const title = h('h1')
  const badges = h('span.badges')
  const body = h('div.post-body')
  const byline = h('p.muted', `by ${authorOf(p)} · ${fmtTime(p.created_at)}`)
  const slot = h('div')
  const own = auth.signedIn && p.author?.clerk_id === me
  const tools = h('div.row', postLike)
  const api = { el: null, onChange: null, update: null }
  let cur = p
  const lockBtn = staff ? h('button.small', { type: 'button', 'data-testid': 'lock-thread' }) : null
  const pinBtn = staff ? h('button.small', { type: 'button', 'data-testid': 'pin-thread' }) : null
  const show = (x) => {
    cur = { ...cur, ...x }
    title.textContent = cur.title
    body.textContent = cur.content
    clear(badges, cur.is_pinned ? h('span.pill', 'Pinned') : null, cur.is_locked ? h('span.pill.locked', 'Locked') : null)
    if (lockBtn) lockBtn.textContent = cur.is_locked ? 'Unlock thread' : 'Lock thread'
    if (pinBtn) pinBtn.textContent = cur.is_pinned ? 'Unpin thread' : 'Pin thread'
    api.onChange?.(cur)
  }
  const change = async (changes, said) => {
    try { show(await patch(`/forum/posts/${p.id}`, changes)); if (said) toast(said) } catch (e) { showError(e) }
  }
  if (lockBtn) lockBtn.onclick = () => change({ is_locked: !cur.is_locked }, cur.is_locked ? 'Thread unlocked' : 'Thread locked')
  if (pinBtn) pinBtn.onclick = () => change({ is_pinned: !cur.is_pinned }, cur.is_pinned ? 'Thread unpinned' : 'Thread pinned')
  if (own || staff) {
    const editBtn = h('button.small', { type: 'button', 'data-testid': 'edit-post' }, 'Edit post')
    editBtn.onclick = () => {
      const t = h('input', { required: true, maxlength: 300, 'aria-label': 'Post title' })
      const c = h('textarea', { required: true, rows: 4, 'aria-label': 'Post text' })
      t.value = cur.title; c.value = cur.content
      const done = () => { slot.replaceChildren(); editBtn.focus() }
      slot.replaceChildren(h('form.stack', {
        onsubmit: async (e) => { e.preventDefault(); await change({ title: t.value, content: c.value }); done() },
        onkeydown: (e) => { if (e.key === 'Escape') { e.preventDefault(); done() } }
      }, t, c, h('div.row', h('button', { type: 'submit' }, 'Save'), h('button.link', { type: 'button', onclick: done }, 'Cancel'))))
      t.focus()
    }
    const delLabel = h('span', 'Delete post')
    const delBtn = h('button.small', { type: 'button', 'data-testid': 'delete-post' }, delLabel)
    let armed = null
    delBtn.onclick = async () => {
      if (!armed) { // first press asks, a second one within 5 s deletes
        delLabel.textContent = 'Really delete the thread?'
        armed = setTimeout(() => { armed = null; delLabel.textContent = 'Delete post' }, 5000)
        return
      }
      clearTimeout(armed); armed = null
      try { await del(`/forum/posts/${p.id}`); toast('Thread deleted'); navigate(`/courses/${p.course_id}#forum-h`) } catch (e) { showError(e) }
    }
    tools.append(editBtn, delBtn)
  }
  if (staff) tools.append(pinBtn, lockBtn)
  api.el = h('article.box.post', h('div.row', title, badges), byline, body, tools, slot)
  api.update = show
  show(p)
  return api
}

/** ♥ n for a post or a reply; disabled on your own and when signed out. */
function likeButton (kind, obj, me) {
  let count = obj.like_count ?? 0
  let mine = !!obj.liked_by_me
  const own = obj.author?.clerk_id === me
  const btn = h('button.small.like', { type: 'button', disabled: own || !auth.signedIn, 'data-testid': `like-${kind}` })
  // named "Like 3": what it does (for screen readers only) and the count it shows (WCAG 2.5.3)
  const label = () => { btn.replaceChildren(h('span.sr-only', 'Like'), h('span', { 'aria-hidden': 'true' }, '♥'), ` ${count}`); btn.setAttribute('aria-pressed', String(mine)) }
  label()
  btn.onclick = async () => {
    try {
      const path = `/forum/${kind === 'post' ? 'posts' : 'replies'}/${obj.id}/like`
      const r = mine ? await del(path) : await put(path, {})
      count = r.like_count; mine = r.liked_by_me; label()
    } catch (e) { showError(e) }
  }
  btn.setCount = (n) => { count = n; label() }
  return btn
}

/** A reply form (to the post, or to the reply parentId); typing in it tells the others. */
function replyForm (postId, parentId, onPosted, onDone) {
  const ta = h('textarea', { required: true, rows: 2, 'aria-label': parentId ? 'Your reply to this reply' : 'Your reply', placeholder: 'Write a reply', 'data-testid': 'reply-input' })
  let lastTyping = 0
  ta.addEventListener('input', () => {
    if (Date.now() - lastTyping > 2000) { lastTyping = Date.now(); live.typing(`thread:${postId}`) }
  })
  return h('form.stack.reply-form', {
    onsubmit: async (e) => {
      e.preventDefault()
      const body = { content: ta.value }
      if (parentId) body.parent_reply_id = parentId
      try {
        onPosted(await post(`/forum/posts/${postId}/replies`, body))
        ta.value = ''
        onDone?.()
      } catch (err) { showError(err) }
    }
  }, ta, h('div.row', h('button', { type: 'submit' }, 'Reply'), parentId ? h('button.link', { type: 'button', onclick: () => onDone?.() }, 'Cancel') : null))
}

/** "Alice is typing…": a name stays for 4 s after its last signal, or until its reply arrives. */
function typingLine () {
  const el = h('p.typing', { 'aria-live': 'polite', 'data-testid': 'typing' })
  const typers = new Map() // clerk_id -> {name, timer}
  const show = () => {
    const names = [...typers.values()].map((t) => t.name)
    el.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : ''
  }
  const stopped = (who) => {
    if (!typers.has(who)) return
    clearTimeout(typers.get(who).timer); typers.delete(who); show()
  }
  const typing = (who, name) => {
    clearTimeout(typers.get(who)?.timer)
    typers.set(who, { name: name || who, timer: setTimeout(() => { typers.delete(who); show() }, 4000) })
    show()
  }
  return { el, typing, stopped }
}

const isDeleted = (r) => !!r.deleted_at || r.content === '[deleted]'

/** The replies as nested lists: add (a reply or a subtree, once), update (edits, deletions), likes. */
function replyTree (postId, me) {
  const nodes = new Map() // reply id -> {li, children, likeBtn, body, setToggle, ownControls}
  const root = h('ul.replies', { 'data-testid': 'replies' })

  const add = (r) => {
    if (nodes.has(r.id)) { update(r); return }
    const deleted = isDeleted(r)
    const children = h('ul.replies')
    const body = h('div.reply-body', { class: deleted ? 'muted' : '' }, deleted ? '[deleted]' : r.content)
    const likeBtn = likeButton('reply', r, me)
    const { toggle, setToggle } = childrenToggle(children)
    const slot = h('div') // the reply or edit form opens here
    const replyBtn = auth.signedIn ? h('button.small.link.reply-btn', {
      type: 'button',
      onclick: () => {
        if (slot.firstChild) { slot.replaceChildren(); return }
        const f = replyForm(postId, r.id, add, () => { slot.replaceChildren(); replyBtn.focus() })
        slot.append(f); f.querySelector('textarea').focus()
      }
    }, 'Reply') : null
    const own = auth.signedIn && !deleted && r.author?.clerk_id === me
    const ownControls = own ? ownReplyControls(r, { body, slot, update, childCount: () => children.children.length }) : null
    const li = h('li.reply', { id: `reply-${r.id}`, dataset: { id: r.id }, 'data-testid': 'reply' },
      h('div.reply-head', h('strong', authorOf(r)), h('small.muted', ` ${timeAgo(r.created_at)}`)),
      body, h('div.row', likeBtn, replyBtn, ownControls, toggle), slot, children)
    nodes.set(r.id, { li, children, likeBtn, body, setToggle, ownControls })
    const parent = r.parent_reply_id ? nodes.get(r.parent_reply_id) : null
    if (parent) { parent.children.append(li); parent.setToggle() } else root.append(li)
    for (const c of r.replies || []) add(c) // GET …/replies nests each subtree under `replies`
  }

  const update = (r) => {
    const n = nodes.get(r.id)
    if (!n) return
    const deleted = isDeleted(r)
    if (deleted && !n.children.children.length) { // a leaf is gone; one with replies stays as [deleted]
      const parent = n.li.parentElement?.closest('li.reply')
      n.li.remove()
      nodes.delete(r.id)
      if (parent) nodes.get(parent.dataset.id)?.setToggle()
      return
    }
    n.body.textContent = deleted ? '[deleted]' : r.content
    n.body.classList.toggle('muted', deleted)
    if (deleted) n.ownControls?.remove()
    if (r.like_count !== undefined) n.likeBtn.setCount(r.like_count)
  }

  const setLikes = (replyId, count) => nodes.get(replyId)?.likeBtn.setCount(count)
  return { root, add, update, setLikes }
}

/** "Hide n replies" / "Show n replies" for a reply's children (hidden while there are none). */
function childrenToggle (children) {
  const toggle = h('button.small.link', { type: 'button', 'aria-expanded': 'true', hidden: true })
  const setToggle = () => {
    const n = children.children.length
    toggle.hidden = n === 0
    const open = toggle.getAttribute('aria-expanded') === 'true'
    toggle.textContent = open ? `Hide ${n} ${n === 1 ? 'reply' : 'replies'}` : `Show ${n} ${n === 1 ? 'reply' : 'replies'}`
  }
  toggle.onclick = () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true'
    toggle.setAttribute('aria-expanded', String(open)); children.hidden = !open; setToggle()
  }
  return { toggle, setToggle }
}

/** Your own reply: edit in place (the form opens in slot), delete with an inline confirmation (no dialog). */
function ownReplyControls (r, { body, slot, update, childCount }) {
  const editBtn = h('button.small.link', { type: 'button', 'data-testid': 'edit-reply' }, 'Edit')
  const delBtn = h('button.small.link', { type: 'button', 'data-testid': 'delete-reply' }, 'Delete')
  let armed = null
  editBtn.onclick = () => {
    const ta = h('textarea', { rows: 2, required: true, 'aria-label': 'Edit your reply' })
    ta.value = body.textContent
    const done = () => { slot.replaceChildren(); editBtn.focus() }
    const form = h('form.stack.reply-form', {
      onsubmit: async (e) => {
        e.preventDefault()
        try { update(await patch(`/forum/replies/${r.id}`, { content: ta.value })); done() } catch (err) { showError(err) }
      }
    }, ta, h('div.row', h('button', { type: 'submit' }, 'Save'), h('button.link', { type: 'button', onclick: done }, 'Cancel')))
    slot.replaceChildren(form)
    ta.focus()
  }
  delBtn.onclick = async () => {
    if (!armed) { // first press asks, a second one within 5 s deletes
      delBtn.textContent = 'Really delete?'
      armed = setTimeout(() => { armed = null; delBtn.textContent = 'Delete' }, 5000)
      return
    }
    clearTimeout(armed); armed = null
    try {
      await del(`/forum/replies/${r.id}`)
      update({ id: r.id, deleted_at: 'now', reply_count: childCount() })
    } catch (err) { showError(err) }
  }
  return h('span.row', editBtn, delBtn)
}

// Formatting: times, ratings, people.
import { h } from './dom.js'

export function fmtTime(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  return isNaN(d) ? String(iso) : d.toLocaleString()
}

export function timeAgo(iso) {
  const s = (Date.now() - new Date(iso).getTime()) / 1000
  if (!isFinite(s)) return ''
  if (s < 60) return 'just now'
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`
  return new Date(iso).toLocaleDateString()
}

export function stars (avg, count) {
  if (avg === null || avg === undefined) return h('span.rating.muted', 'No ratings yet')
  const r = Math.round(Number(avg) * 2) / 2
  return h('span.rating', { title: `${Number(avg).toFixed(2)} out of 5` },
    h('span', { 'aria-hidden': 'true' }, '★'.repeat(Math.floor(r)) + (r % 1 ? '½' : '') + '☆'.repeat(5 - Math.ceil(r))),
    h('span.sr-only', `Rated ${Number(avg).toFixed(1)} out of 5`),
    ` ${Number(avg).toFixed(1)} (${count ?? 0})`)
}

// Forum posts and replies (REST and their live events) carry `author: {clerk_id, name, image_url}`,
// null on a deleted reply (server/forum/service.py, _author).
export const authorOf = (x) => x?.author?.name || 'Someone'
export const tagName = (t) => (typeof t === 'string' ? t : t?.name)

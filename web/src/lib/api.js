// The REST client: /api with the session's bearer token (one retry after a refresh on 401).
import { auth } from './auth.js'
import { problem } from './errors.js'

export async function api (method, path, body) {
  const go = async () => {
    const headers = {}
    if (auth.token) headers.authorization = `Bearer ${auth.token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    return fetch('/api' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  }
  let res = await go()
  if (res.status === 401 && auth.signedIn) {
    await auth.refresh().catch(() => {})
    res = await go()
  }
  if (!res.ok) throw await problem(res)
  if (res.status === 204) return null
  const type = res.headers.get('content-type') || ''
  return type.includes('json') ? res.json() : res.text()
}
export const get = (p) => api('GET', p)
export const post = (p, b = {}) => api('POST', p, b)
export const put = (p, b) => api('PUT', p, b)
export const patch = (p, b) => api('PATCH', p, b)
export const del = (p) => api('DELETE', p)

/** Every item of a keyset-paginated list (bounded). */
export async function getAll (path, maxPages = 10) {
  const items = []
  let cursor = null
  let last = null
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?'
    last = await get(path + (cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ''))
    items.push(...(last.items || []))
    cursor = last.next_cursor
    if (!cursor) break
  }
  return { items, last }
}

export const qs = (params) => {
  const u = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v)
  const s = u.toString()
  return s ? '?' + s : ''
}

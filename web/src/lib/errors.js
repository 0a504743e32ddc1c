// API errors: the problem+json body of a failed request, and its text for people.

export class ApiError extends Error {
  constructor (status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

export async function problem (res) {
  let body = null
  try { body = await res.json() } catch { /* not JSON */ }
  return new ApiError(res.status, body)
}

export function errorText (err) {
  if (err instanceof ApiError) {
    // the server sends loc as a dotted path ("body.title"); older bodies had a list
    const fields = (err.body.errors || []).map((e) => `${Array.isArray(e.loc) ? e.loc.join('.') : (e.loc || '')}: ${e.msg}`).join('; ')
    return `${err.message}${fields ? ' — ' + fields : ''}`
  }
  return err?.message || String(err)
}

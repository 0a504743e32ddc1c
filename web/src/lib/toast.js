// Toasts in the polite live region (#toasts).
import { h } from './dom.js'
import { errorText } from './errors.js'

/** A toast in the polite live region: never takes focus, dismissible, leaves after a while. */
export function toast (title, body, { href, kind = 'info', timeout = 8000 } = {}) {
  const box = document.getElementById('toasts')
  const close = h('button.toast-close', { type: 'button', 'aria-label': 'Dismiss notification', onclick: () => el.remove() }, '×')
  const text = href
    ? h('a.toast-title', { href, 'data-link': '' }, title)
    : h('strong.toast-title', title)
  const el = h('div.toast.' + kind, { 'data-testid': 'toast' }, h('div.toast-text', text, body ? h('div.toast-body', body) : null), close)
  box.append(el)
  if (timeout) setTimeout(() => el.remove(), timeout)
  return el
}

export function showError (err) { toast('Something went wrong', errorText(err), { kind: 'error' }) }

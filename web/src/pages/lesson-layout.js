// The lesson page's layout: the editor is the main column and the side panel a narrow one; the
// rendered preview is shown or hidden with a toggle (under the editor on a laptop screen, beside it
// from 1600 px), open by default for readers and on wide screens, and remembered per browser.
import { h } from '../lib/dom.js'

const KEY = 'scriptorium.preview'

export function previewToggle (grid, { readOnly }) {
  let stored = null
  try { stored = localStorage.getItem(KEY) } catch { /* storage off */ }
  let open = stored === null ? readOnly || matchMedia('(min-width: 1600px)').matches : stored === 'open'
  const btn = h('button.small.preview-toggle', { type: 'button', 'aria-controls': 'lesson-preview', 'data-testid': 'preview-toggle' }, 'Preview')
  const set = (value) => { open = value; grid.dataset.preview = value ? 'open' : 'closed'; btn.setAttribute('aria-expanded', String(value)) }
  btn.onclick = () => {
    set(!open)
    try { localStorage.setItem(KEY, open ? 'open' : 'closed') } catch { /* storage off */ }
  }
  set(open)
  return btn
}

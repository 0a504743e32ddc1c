// The shell: routing, the header and session (lib/header.js), boot. Each page is its own module
// under pages/, loaded when first visited, so the first load carries only the shell and lib/.
import './style.css'
import { h, clear } from './lib/dom.js'
import { auth } from './lib/auth.js'
import { ApiError, errorText } from './lib/errors.js'
import { live } from './lib/live.js'
import { state, setRenderer, navigate, render } from './lib/router.js'
import { renderHeader, closePanel, afterSignIn } from './lib/header.js'

const mainEl = document.getElementById('main')

// --- routing ------------------------------------------------------------------------------

const routes = [
  [/^\/$/, () => import('./pages/catalogue.js')],
  [/^\/signin$/, () => import('./pages/signin.js')],
  [/^\/courses\/([0-9a-f-]+)$/, () => import('./pages/course.js')],
  [/^\/lessons\/([0-9a-f-]+)$/, () => import('./pages/lesson.js')], // CodeMirror, Yjs: only here
  [/^\/threads\/([0-9a-f-]+)$/, () => import('./pages/thread.js')],
  [/^\/courses\/[0-9a-f-]+\/forum\/([0-9a-f-]+)$/, () => import('./pages/thread.js')], // the links notifications carry
  [/^\/me$/, () => import('./pages/me.js')],
  [/^\/my-work$/, () => import('./pages/mywork.js')],
  [/^\/notifications$/, () => import('./pages/notifications.js')]
]

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]')
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return
  const url = new URL(a.href, location.href)
  if (url.origin !== location.origin || /^\/(api|docs|media|openapi)/.test(url.pathname)) return
  e.preventDefault()
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return // in-page anchor
  navigate(url.pathname + url.search + url.hash)
})
window.addEventListener('popstate', () => render())

setRenderer(async function renderPage () {
  for (const fn of state.cleanup.splice(0)) { try { fn() } catch { /* already gone */ } }
  closePanel()
  const path = location.pathname
  if (!auth.signedIn && path !== '/signin' && auth.mode === 'dev' && !/^\/(courses|lessons|threads)\//.test(path) && path !== '/') {
    navigate('/signin?next=' + encodeURIComponent(path), true)
    return
  }
  // each visit renders into its own root: a page that finishes loading after you left writes nowhere visible
  const main = h('div.view')
  state.root = main
  clear(mainEl, main)
  for (const [re, load] of routes) {
    const m = path.match(re)
    if (m) {
      clear(main, h('p.muted', 'Loading…'))
      try {
        const page = (await load()).default
        if (state.root !== main) return // left while the page's module loaded
        await page(main, ...m.slice(1))
        if (location.hash && state.root === main) {
          const target = document.getElementById(decodeURIComponent(location.hash.slice(1)))
          if (target) { target.scrollIntoView({ block: 'start' }); target.classList.add('target') }
        }
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) clear(main, h('h1', 'Not found'), h('p', 'This page does not exist or you cannot see it.'))
        else if (err instanceof ApiError && err.status === 401) navigate('/signin?next=' + encodeURIComponent(path), true)
        else clear(main, h('h1', 'Could not load this page'), h('p.error', errorText(err)))
      }
      return
    }
  }
  clear(main, h('h1', 'Not found'), h('p', h('a', { href: '/' }, 'Back to the catalogue')))
})

// --- boot ---------------------------------------------------------------------------------

async function boot () {
  await auth.init()
  auth.on('token', async (t) => {
    if (!t) { state.me = null; renderHeader(); live.stopped = true; return }
    if (auth.mode === 'clerk' && state.me?.clerk_id !== auth.session?.sub) { // signed in through Clerk's component
      await afterSignIn()
      if (location.pathname === '/signin') navigate(new URLSearchParams(location.search).get('next') || '/')
    }
  })
  if (auth.signedIn) await afterSignIn()
  else renderHeader()
  await render()
}
window.scriptorium = { live, auth } // a handle for debugging and the browser tests (no secrets)
boot()

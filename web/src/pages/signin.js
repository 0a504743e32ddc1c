// Sign in: Clerk's component, or (development mode) a name or one of the demo people.
import { h, clear } from '../lib/dom.js'
import { auth } from '../lib/auth.js'
import { errorText } from '../lib/errors.js'
import { navigate } from '../lib/router.js'
import { afterSignIn } from '../lib/header.js'

// the people of `python -m server demo`
const DEMO_PEOPLE = [['user_alice', 'Alice Author', 'author'], ['user_bob', 'Bob Editor', 'editor'],
  ['user_carol', 'Carol Learner', 'learner'], ['user_dan', 'Dan Learner', 'learner']]

export default async function signIn (main) {
  const next = new URLSearchParams(location.search).get('next') || '/'
  if (auth.mode === 'clerk') {
    const box = h('div#clerk-sign-in')
    clear(main, h('h1', 'Sign in'), box)
    auth.mountClerkSignIn(box)
    return
  }
  const input = h('input', { id: 'signin-name', name: 'name', required: true, autocomplete: 'name', placeholder: 'Your name', maxlength: 80 })
  const err = h('p.error', { role: 'alert' })
  const go = async (name, sub) => {
    try { await auth.devSignIn(name, sub); await afterSignIn(); navigate(next) } catch (e) { err.textContent = errorText(e) }
  }
  clear(main,
    h('h1', 'Sign in (development mode)'),
    h('p.muted', 'Pick a demo person or type any name. Each name is its own account.'),
    h('div.row.people', DEMO_PEOPLE.map(([sub, n, role]) => h('button', { type: 'button', onclick: () => go(n, sub) }, n, h('small.muted', ` (${role})`)))),
    h('form.stack', { onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) go(input.value) } },
      h('label', { for: 'signin-name' }, 'Name'), input, h('button.primary', { type: 'submit' }, 'Sign in')),
    err)
  input.focus()
}

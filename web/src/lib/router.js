// The page state every page shares: the current view's root, the signed-in user, and what to undo
// when the view is left. main.js installs the renderer; pages call navigate() and render().

export const state = { me: null, unread: 0, cleanup: [], root: null }

let renderer = async () => {}
export const setRenderer = (fn) => { renderer = fn }

/** Render the current location again (the shell's router). */
export const render = () => renderer()

export function navigate (path, replace = false) {
  if (replace) history.replaceState(null, '', path)
  else history.pushState(null, '', path)
  render()
}

/** Run fn when the current view is left. */
export const onLeave = (fn) => state.cleanup.push(fn)

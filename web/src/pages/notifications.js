// All notifications (/notifications); the bell's panel shows the same list.
import { h, clear } from '../lib/dom.js'
import { fillNotifications } from '../lib/notifications.js'

export default async function notificationsPage (main) {
  const box = h('section.box')
  clear(main, box)
  await fillNotifications(box, false)
}

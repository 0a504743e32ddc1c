// Events: a tiny emitter (auth and the live client use it).

export class Emitter {
  constructor () { this.handlers = new Map() }
  on (name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set())
    this.handlers.get(name).add(fn)
    return () => this.handlers.get(name).delete(fn)
  }
  emit (name, ...args) { for (const fn of [...(this.handlers.get(name) || [])]) fn(...args) }
}

// @hocuspocus/server from npm (tests/js's package), in memory, no extensions, no auth hook: the
// reference for bench/hocuspocus/run.py. usage: node server.mjs PORT
import { Server } from '@hocuspocus/server'

const server = new Server({ port: +process.argv[2], address: '127.0.0.1', quiet: true })
await server.listen()

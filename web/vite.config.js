import { defineConfig } from 'vite'

export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1200,
    // every browser we serve preloads modules natively (<link rel=modulepreload>); one without it
    // loads the same chunks, only later: no polyfill in the first chunk
    modulePreload: { polyfill: false },
    // The shell (main.js and lib/) is one chunk every page shares; each page under pages/ is its own
    // chunk, loaded on first visit (the lesson page's carries CodeMirror and Yjs).
    rolldownOptions: { output: { codeSplitting: { groups: [{ name: 'shell', test: /[\\/]src[\\/](lib[\\/]|main\.js$)/ }] } } }
  },
  server: { proxy: { '/api': 'http://127.0.0.1:8000', '/ws': { target: 'ws://127.0.0.1:8000', ws: true }, '/collab': { target: 'ws://127.0.0.1:8000', ws: true } } }
})

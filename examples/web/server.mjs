// The web demo: a chat against the demo agent (a scripted model that streams
// slowly and asks before it refunds), served on loopback with
// createAgentHandler. Reload mid-answer, open the run in a second tab, stop
// it from either, approve the refund.
//
//   npm start                              # in memory, http://127.0.0.1:3000
//   REDIS_URL=redis://127.0.0.1:6379 npm start
//   REDIS_URL=... PORT=3001 npm start      # a second server on the same runs
//
// The page's script is the package's browser client (`durable-agent/client`),
// bundled from its sources with esbuild when the server starts.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'

import { build } from 'esbuild'

import { createAgentHandler, InMemoryServerCache, RedisServerCache, toNodeHandler } from '../../dist/index.js'
import { createDemoAgent } from './demo-agent.mjs'

const here = fileURLToPath(new URL('.', import.meta.url))

/** The browser client, bundled once (ESM, no dependencies left). */
async function clientBundle() {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('../../ts/http/browser.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  })
  return result.outputFiles[0].text
}

/**
 * Starts the demo server. `pace`: what the model waits before each word
 * (tests pass a gate). Resolves with its `url`, `agent` and `close()`.
 */
export async function startDemoServer({ port = 3000, host = '127.0.0.1', redisUrl, pace, keyPrefix = 'durable-agent-demo:' } = {}) {
  const cache = redisUrl ? new RedisServerCache({ url: redisUrl }, { keyPrefix }) : new InMemoryServerCache({ maxSize: 100_000 })
  const agent = createDemoAgent({ cache, ...(pace ? { pace } : {}) })
  const api = createAgentHandler(agent, { basePath: '/api' })
  const [page, script, client] = await Promise.all([readFile(`${here}index.html`, 'utf8'), readFile(`${here}app.js`, 'utf8'), clientBundle()])
  const files = {
    '/': ['text/html; charset=utf-8', page],
    '/app.js': ['text/javascript; charset=utf-8', script],
    '/client.js': ['text/javascript; charset=utf-8', client],
  }
  let address
  const handler = async (request) => {
    const { pathname } = new URL(request.url)
    if (pathname.startsWith('/api/')) {
      if (pathname === '/api/info') return Response.json({ port: address.port, pid: process.pid, store: redisUrl ? 'redis' : 'memory' })
      return api(request)
    }
    if (pathname === '/favicon.ico') return new Response(null, { status: 204 })
    const file = files[pathname]
    if (!file || request.method !== 'GET') return new Response('not found', { status: 404 })
    return new Response(file[1], { headers: { 'content-type': file[0], 'cache-control': 'no-store' } })
  }
  const server = createServer(toNodeHandler(handler))
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  address = server.address()
  return {
    url: `http://${host}:${address.port}`,
    agent,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => (cache.close ? cache.close().then(resolve) : resolve()))
      }),
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const redisUrl = process.env.REDIS_URL
  const demo = await startDemoServer({ port: Number(process.env.PORT ?? 3000), redisUrl })
  console.log(`durable-agent web demo on ${demo.url} (${redisUrl ? `Redis at ${redisUrl}` : 'in memory'}); Ctrl-C stops it`)
  process.on('SIGINT', () => demo.close().then(() => process.exit(0)))
}

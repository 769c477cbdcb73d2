// Finds a Redis for tests, benchmarks and demos: REDIS_URL if it answers, else
// 127.0.0.1:6379, else a redis-server of our own on a free port (stopped by
// the returned `stop`). One place for this logic; everything else asks here.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

function answers(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    let parsed
    try {
      parsed = new URL(url)
    } catch {
      return resolve(false)
    }
    if (parsed.protocol !== 'redis:') return resolve(false) // TLS/unix: trust the caller
    const socket = createConnection({ host: parsed.hostname, port: Number(parsed.port || 6379) })
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => done(/^(\+PONG|-NOAUTH)/.test(data.toString())))
  })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** @returns {Promise<{ url: string, stop: () => void }>} */
export async function ensureRedis() {
  const given = process.env.REDIS_URL
  if (given) {
    if (given.startsWith('rediss:') || (await answers(given))) return { url: given, stop: () => {} }
    console.warn(`[redis] REDIS_URL=${given} does not answer; looking elsewhere`)
  }
  if (await answers('redis://127.0.0.1:6379')) return { url: 'redis://127.0.0.1:6379', stop: () => {} }
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error('no Redis answers and redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'durable-agent-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const url = `redis://127.0.0.1:${port}`
  const deadline = Date.now() + 10_000
  while (!(await answers(url))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis-server on port ${port} did not start`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  console.log(`[redis] started redis-server at ${url}`)
  return { url, stop: () => child.kill('SIGTERM') }
}

async function clusterReady(nodes) {
  for (const url of nodes) {
    const port = new URL(url).port
    const info = spawnSync('redis-cli', ['-p', port, 'cluster', 'info'], { encoding: 'utf8' })
    if (!/cluster_state:ok/.test(info.stdout ?? '') || !/cluster_slots_ok:16384/.test(info.stdout ?? '')) return false
  }
  return true
}

/**
 * A Redis Cluster for tests and benchmarks: REDIS_CLUSTER_NODES (comma
 * separated URLs) if it answers, else three primaries of our own on free
 * ports, stopped by the returned `stop`. Needs Redis 7 (sharded pub/sub).
 * @returns {Promise<{ nodes: string[], stop: () => void }>}
 */
export async function ensureRedisCluster() {
  const given = process.env.REDIS_CLUSTER_NODES
  if (given) {
    const nodes = given
      .split(',')
      .map((url) => url.trim())
      .filter(Boolean)
    if (nodes.length > 0 && (await answers(nodes[0]))) return { nodes, stop: () => {} }
    console.warn(`[redis] REDIS_CLUSTER_NODES=${given} does not answer; starting a cluster`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'durable-agent-cluster-'))
  const ports = []
  while (ports.length < 3) {
    const port = await freePort()
    // A cluster node also listens on port + 10000 (the cluster bus).
    if (!ports.includes(port) && port + 10000 <= 65535) ports.push(port)
  }
  const children = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        '5000',
      ],
      { stdio: 'ignore' },
    ),
  )
  const stop = () => children.forEach((child) => child.kill('SIGTERM'))
  const nodes = ports.map((port) => `redis://127.0.0.1:${port}`)
  try {
    const deadline = Date.now() + 20_000
    for (const url of nodes) {
      while (!(await answers(url))) {
        if (Date.now() > deadline) throw new Error(`cluster node ${url} did not start`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
    })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    while (!(await clusterReady(nodes))) {
      if (Date.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } catch (error) {
    stop()
    throw error
  }
  console.log(`[redis] started a Redis Cluster at ${nodes.join(',')}`)
  return { nodes, stop }
}

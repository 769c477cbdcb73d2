import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { Cluster as IORedisCluster, Redis as IORedis } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { CachingPubSub, nodeRedisPreset, RedisServerCache, upstashPreset, type RedisClient } from '../dist/index.js'
import { cacheContract } from './contract.js'
import { eventually, freePort, OwnRedis, REDIS_URL, redisClusterNodes, uniquePrefix, within } from './helpers.js'

/** A plain ioredis connection for looking at what the caches wrote. */
const raw = new IORedis(REDIS_URL)
afterAll(() => raw.quit())

cacheContract('RedisServerCache (native, url)', async () => {
  const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('url') })
  return { cache, done: async () => (await cache.clear(), await cache.close()) }
})

cacheContract('RedisServerCache (native, Redis Cluster)', async () => {
  const cache = new RedisServerCache({ cluster: { nodes: redisClusterNodes() } }, { keyPrefix: uniquePrefix('cluster') })
  return { cache, done: async () => (await cache.clear(), await cache.close()) }
})

cacheContract('RedisServerCache (native, host/port)', async () => {
  const url = new URL(REDIS_URL)
  const cache = new RedisServerCache({ host: url.hostname, port: Number(url.port || 6379) }, { keyPrefix: uniquePrefix('parts') })
  return { cache, done: async () => (await cache.clear(), await cache.close()) }
})

cacheContract('RedisServerCache ({ client: ioredis })', async () => {
  const client = new IORedis(REDIS_URL)
  const cache = new RedisServerCache({ client: client as unknown as RedisClient }, { keyPrefix: uniquePrefix('ioredis') })
  return { cache, done: async () => (await cache.clear(), void (await client.quit())) }
})

cacheContract('RedisServerCache ({ client: ioredis Cluster })', async () => {
  const client = new IORedisCluster(redisClusterNodes().map((url) => ({ host: new URL(url).hostname, port: Number(new URL(url).port) })))
  const cache = new RedisServerCache({ client: client as unknown as RedisClient }, { keyPrefix: uniquePrefix('ioredis-cluster') })
  return { cache, done: async () => (await cache.clear(), void (await client.quit())) }
})

cacheContract('RedisServerCache ({ client: node-redis }, nodeRedisPreset)', async () => {
  const client = createClient({ url: REDIS_URL })
  await client.connect()
  const cache = new RedisServerCache({ client: client as unknown as RedisClient }, { keyPrefix: uniquePrefix('noderedis'), ...nodeRedisPreset })
  return { cache, done: async () => (await cache.clear(), void (await client.quit())) }
})

/**
 * `@upstash/redis` speaks HTTP to Upstash, which cannot run here. This object
 * makes the same calls that client exposes (`set(k, v, { ex })`,
 * `scan(c, { match, count })`, `eval(script, keys, args)`) on a real Redis
 * through ioredis, to prove `upstashPreset` drives those shapes correctly.
 */
function upstashShaped(client: IORedis): RedisClient {
  return {
    get: (key) => client.get(key),
    set: (key, value, opts?: unknown) => {
      const ex = (opts as { ex?: number } | undefined)?.ex
      return ex ? client.set(key, value as string, 'EX', ex) : client.set(key, value as string)
    },
    llen: (key) => client.llen(key),
    rpush: (key, ...values) => client.rpush(key, ...(values as string[])),
    lrange: (key, start, stop) => client.lrange(key, start, stop),
    del: (...keys) => client.del(...keys),
    expire: (key, seconds) => client.expire(key, seconds),
    scan: (cursor, opts?: unknown) => {
      const { match, count } = opts as { match: string; count: number }
      return client.scan(String(cursor), 'MATCH', match, 'COUNT', count)
    },
    incr: (key) => client.incr(key),
    eval: (script, keys, args) => client.eval(script as string, (keys as string[]).length, ...(keys as string[]), ...(args as string[])),
  }
}

cacheContract('RedisServerCache ({ client: Upstash-shaped }, upstashPreset)', async () => {
  const client = new IORedis(REDIS_URL)
  const cache = new RedisServerCache({ client: upstashShaped(client) }, { keyPrefix: uniquePrefix('upstash'), ...upstashPreset })
  return { cache, done: async () => (await cache.clear(), void (await client.quit())) }
})

describe('RedisServerCache: keys and TTL', () => {
  it('prefixes every key, tags a list with its counter, and clear() touches only its prefix', async () => {
    const prefix = uniquePrefix('keys')
    const other = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: uniquePrefix('other') })
    const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
    await other.set('survivor', 1)
    await cache.listPushIndexed('pubsub:agent.stream.r1', 'pubsub:agent.stream.r1:counter', { a: 1 })
    const keys = (await raw.keys(`${prefix}*`)).sort()
    expect(keys).toEqual([`${prefix}{pubsub:agent.stream.r1}`, `${prefix}{pubsub:agent.stream.r1}:counter`])
    expect(await raw.cluster('KEYSLOT', keys[0]!).catch(() => null)).toBe(await raw.cluster('KEYSLOT', keys[1]!).catch(() => null))
    await cache.clear()
    expect(await raw.keys(`${prefix}*`)).toEqual([])
    expect(await other.get('survivor')).toBe(1)
    await other.clear()
    await Promise.all([cache.close(), other.close()])
  })

  it('sets ttlSeconds on every write; 0 keeps keys', async () => {
    const prefix = uniquePrefix('ttl')
    const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix, ttlSeconds: 1 })
    await cache.set('v', 1)
    await cache.listPushIndexed('l', 'l:counter', {})
    await cache.increment('n')
    for (const key of await raw.keys(`${prefix}*`)) {
      const ttl = await raw.pttl(key)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(1000)
    }
    await eventually(async () => (await raw.keys(`${prefix}*`)).length === 0, 5_000, 'keys to expire')
    const keep = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix, ttlSeconds: 0 })
    await keep.set('v', 1)
    expect(await raw.pttl(`${prefix}{v}`)).toBe(-1)
    await keep.set('short', 1, 1500)
    expect(await raw.pttl(`${prefix}{short}`)).toBeGreaterThan(1000)
    await keep.clear()
    await Promise.all([cache.close(), keep.close()])
  })
})

describe('RedisServerCache: data written by another program', () => {
  it('reads a value that is not JSON back as a string, without spoiling the calls around it', async () => {
    const prefix = uniquePrefix('foreign')
    const cache = new RedisServerCache({ url: REDIS_URL }, { keyPrefix: prefix })
    await raw.set(`${prefix}{plain}`, 'not {json')
    await raw.rpush(`${prefix}{mixed}`, '{"ok":1}', 'oops', '[2]')
    const [plain, mixed, missing] = await Promise.all([cache.get('plain'), cache.listFromTo('mixed', 0), cache.get('nope')])
    expect(plain).toBe('not {json')
    expect(mixed).toEqual([{ ok: 1 }, 'oops', [2]])
    expect(missing).toBeUndefined()
    await cache.clear()
    await cache.close()
  })
})

describe('RedisServerCache: options', () => {
  it.each([
    [{ url: 'http://localhost:6379' }, {}, 'url'],
    [{ url: 'not a url' }, {}, 'url'],
    [{ url: REDIS_URL }, { ttlSeconds: -1 }, 'ttlSeconds'],
    [{ url: REDIS_URL }, { ttlSeconds: Number.NaN }, 'ttlSeconds'],
    [{ url: REDIS_URL }, { connectTimeoutMs: 0 }, 'connectTimeoutMs'],
    [{ url: REDIS_URL }, { keyPrefix: 5 }, 'keyPrefix'],
    [{ host: 'localhost', port: 70_000 }, {}, 'port'],
    [{ host: 'localhost', port: 1.5 }, {}, 'port'],
    [{ host: 'localhost', db: -1 }, {}, 'db'],
    [{ url: REDIS_URL, tls: { ca: 'not a pem' } }, {}, 'tls'],
    [{ url: 'rediss://127.0.0.1:6379', tls: { ca: 42 } }, {}, 'tls.ca'],
    [{ url: 'rediss://127.0.0.1:6379', tls: { ca: 'garbage' } }, {}, 'tls.ca'],
    [{ url: 'rediss://127.0.0.1:6379', tls: { ca: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n' } }, {}, 'tls.ca'],
    [{ host: '127.0.0.1', tls: { ca: 'garbage' } }, {}, 'tls.ca'],
    [{ cluster: { nodes: ['rediss://127.0.0.1:7000'] }, tls: { ca: 'garbage' } }, {}, 'tls.ca'],
    [{ cluster: { nodes: [] } }, {}, 'cluster.nodes'],
    [{ cluster: { nodes: ['redis://127.0.0.1:7000', 5] } }, {}, 'cluster.nodes'],
    [{ cluster: { nodes: ['http://127.0.0.1:7000'] } }, {}, 'cluster.nodes'],
    [{ cluster: { nodes: ['redis://127.0.0.1:7000', 'rediss://127.0.0.1:7001'] } }, {}, 'cluster.nodes'],
    [{ cluster: null }, {}, 'cluster.nodes'],
  ])('rejects %o %o naming the option', (connection, options, name) => {
    expect(() => new RedisServerCache(connection as never, options as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(`\`${name}\``) }),
    )
  })
})

describe('RedisServerCache: faults', () => {
  it('rejects fast with ERR_REDIS_UNAVAILABLE and the address when nothing listens', async () => {
    const port = await freePort()
    const cache = new RedisServerCache({ url: `redis://127.0.0.1:${port}` }, { connectTimeoutMs: 1000 })
    const start = Date.now()
    const error = await cache.get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE', message: expect.stringContaining(`127.0.0.1:${port}`) })
    expect(Date.now() - start).toBeLessThan(1000)
    await cache.close()
  })

  it('TLS to a Redis that speaks plain Redis fails at once with ERR_INVALID_OPTION, not after the timeouts', async () => {
    const { port } = new URL(REDIS_URL)
    // Without the probe, the handshake waits the whole 20 s connect timeout.
    const cache = new RedisServerCache({ url: `rediss://127.0.0.1:${port || 6379}` }, { connectTimeoutMs: 20_000, commandTimeoutMs: 20_000 })
    const error = await within(
      cache.get('k').catch((e: unknown) => e),
      10_000,
      'the TLS call to fail',
    )
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/speaks plain Redis, not TLS/) })
    await cache.close()
  })

  it('rejects within connectTimeoutMs when the host never answers', async () => {
    // A listening socket that never accepts: the TCP handshake completes
    // (backlog) but Redis's handshake never answers.
    const { createServer } = await import('node:net')
    const sockets: import('node:net').Socket[] = []
    const server = createServer((socket) => sockets.push(socket))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    const cache = new RedisServerCache({ url: `redis://127.0.0.1:${port}` }, { connectTimeoutMs: 300, commandTimeoutMs: 300 })
    const start = Date.now()
    const error = await cache.get('k').catch((e: unknown) => e)
    expect((error as { code: string }).code).toMatch(/^ERR_REDIS_(UNAVAILABLE|TIMEOUT)$/)
    expect((error as Error).message).toContain(`127.0.0.1:${port}`)
    expect(Date.now() - start).toBeLessThan(1500)
    await cache.close()
    sockets.forEach((s) => s.destroy())
    server.close()
  })

  it('rejects wrong credentials with ERR_REDIS_AUTH, and an ACL user with the right ones works', async () => {
    const user = `test-acl-${Math.random().toString(36).slice(2)}`
    const prefix = uniquePrefix('acl')
    await raw.call('ACL', 'SETUSER', user, 'on', '>s3cret-pass', `~${prefix}*`, '+@all')
    try {
      const url = new URL(REDIS_URL)
      const wrong = new RedisServerCache({ host: url.hostname, port: Number(url.port || 6379), username: user, password: 'nope' })
      await expect(wrong.get('k')).rejects.toMatchObject({ code: 'ERR_REDIS_AUTH' })
      await wrong.close()
      const right = new RedisServerCache({ url: `redis://${user}:s3cret-pass@${url.host}` }, { keyPrefix: prefix })
      await right.set('k', { ok: true })
      expect(await right.get('k')).toEqual({ ok: true })
      // The ACL confines the user to its prefix: another prefix is refused.
      const outside = new RedisServerCache({ url: `redis://${user}:s3cret-pass@${url.host}` }, { keyPrefix: 'elsewhere:' })
      await expect(outside.set('k', 1)).rejects.toMatchObject({ code: 'ERR_REDIS_AUTH' })
      await right.clear()
      await Promise.all([right.close(), outside.close()])
    } finally {
      await raw.call('ACL', 'DELUSER', user)
    }
  })

  describe('with a Redis that restarts mid-test', () => {
    let redis: OwnRedis
    beforeAll(async () => {
      redis = new OwnRedis(await freePort())
      await redis.start()
    })
    afterAll(() => redis.stop())

    it('fails calls with ERR_REDIS_UNAVAILABLE while down, then works again with the same object', async () => {
      const cache = new RedisServerCache({ url: redis.url }, { connectTimeoutMs: 500 })
      await cache.set('before', 1)
      expect(await cache.get('before')).toBe(1)
      await redis.stop()
      const start = Date.now()
      await expect(cache.get('before')).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      await expect(cache.listPushIndexed('l', 'l:counter', {})).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      expect(Date.now() - start).toBeLessThan(2000)
      await redis.start()
      // The restarted server is empty (no persistence); the cache reconnects by itself.
      await eventually(() => succeeds(cache.set('after', 2)), 5_000, 'reconnection')
      expect(await cache.get('after')).toBe(2)
      expect(await cache.listPushIndexed('l', 'l:counter', {})).toBe(0)
      await cache.close()
    })

    it('a callback subscriber rides the outage out, reports it once (not at every retry), and gets what is published after it', async () => {
      const cache = new RedisServerCache({ url: redis.url }, { connectTimeoutMs: 300, commandTimeoutMs: 1_000 })
      const errors: (Error & { code?: string })[] = []
      const pubsub = new CachingPubSub(null, cache, { keyPrefix: uniquePrefix('outage-report'), onError: (error) => void errors.push(error) })
      const received: unknown[] = []
      await pubsub.subscribe('t', (event) => void received.push(event.data))
      await redis.stop()
      await eventually(() => errors.length > 0, 15_000, 'the outage to be reported')
      // Down for a while longer: the subscription keeps retrying (every 250 ms at most), silently.
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      await redis.start()
      await eventually(() => succeeds(pubsub.publish('t', { type: 'note', runId: 'r', data: { after: true } })), 10_000, 'publishing again')
      await eventually(() => received.length > 0, 10_000, 'the event published after the outage')
      expect(received).toEqual([{ after: true }])
      expect(errors).toHaveLength(1)
      expect(['ERR_REDIS_UNAVAILABLE', 'ERR_REDIS_TIMEOUT']).toContain(errors[0]!.code)
      await cache.close()
    })
  })

  describe('with a Redis Cluster that is down, then comes up', () => {
    let node: OwnRedis
    afterAll(() => node?.stop())

    it('fails calls with ERR_REDIS_UNAVAILABLE while down, then works with the same object', async () => {
      const port = await freePort()
      const cache = new RedisServerCache(
        { cluster: { nodes: [`redis://127.0.0.1:${port}`] } },
        { keyPrefix: uniquePrefix('cluster-down'), connectTimeoutMs: 500, commandTimeoutMs: 500 },
      )
      const start = Date.now()
      await expect(cache.get('k')).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE', message: expect.stringContaining(`127.0.0.1:${port}`) })
      expect(Date.now() - start).toBeLessThan(2000)
      // A one-node cluster on that address, owning every slot.
      const dir = mkdtempSync(join(tmpdir(), 'durable-agent-cluster-down-'))
      // A lone node does not know its own address: announce it.
      node = new OwnRedis(port, [
        '--cluster-enabled',
        'yes',
        '--cluster-announce-ip',
        '127.0.0.1',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--dir',
        dir,
      ])
      await node.start()
      execFileSync('redis-cli', ['-p', String(port), 'cluster', 'addslotsrange', '0', '16383'])
      const clusterInfo = () => execFileSync('redis-cli', ['-p', String(port), 'cluster', 'info']).toString()
      await eventually(() => clusterInfo().includes('cluster_state:ok'), 10_000, 'cluster_state:ok')
      await eventually(() => succeeds(cache.set('k', 1)), 10_000, 'the cluster to serve')
      expect(await cache.get('k')).toBe(1)
      expect(await cache.listPushIndexed('l', 'l:counter', {})).toBe(0)
      await cache.clear()
      await cache.close()
    })
  })

  describe('over TLS', () => {
    let redis: OwnRedis
    let ca: string
    let tlsPort: number
    let dir: string
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'durable-agent-tls-'))
      const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
      run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=durable-agent test CA')
      run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
      writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
      run(
        'x509',
        '-req',
        '-in',
        'server.csr',
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        'server.crt',
        '-days',
        '1',
        '-extfile',
        'ext.cnf',
      )
      ca = execFileSync('cat', [join(dir, 'ca.crt')]).toString()
      tlsPort = await freePort()
      // Port 0: no plain-text listener, TLS only.
      redis = new OwnRedis(0, [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        join(dir, 'server.crt'),
        '--tls-key-file',
        join(dir, 'server.key'),
        '--tls-ca-cert-file',
        join(dir, 'ca.crt'),
        '--tls-auth-clients',
        'no',
      ])
      await redis.start()
    })
    afterAll(() => redis.stop())

    it('connects with rediss:// and a trusted CA, by URL and by host/port', async () => {
      const byUrl = new RedisServerCache({ url: `rediss://localhost:${tlsPort}`, tls: { ca } })
      await byUrl.set('k', { tls: true })
      const byParts = new RedisServerCache({ host: 'localhost', port: tlsPort, tls: { ca } })
      expect(await byParts.get('k')).toEqual({ tls: true })
      await Promise.all([byUrl.close(), byParts.close()])
    })

    it('refuses a server whose certificate it does not trust', async () => {
      const untrusting = new RedisServerCache({ url: `rediss://localhost:${tlsPort}` }, { connectTimeoutMs: 1000 })
      await expect(untrusting.get('k')).rejects.toMatchObject({ code: 'ERR_REDIS_UNAVAILABLE' })
      await untrusting.close()
    })

    it('works with a Redis Cluster over TLS: commands, scripts and live events between two clients', async () => {
      // A one-node cluster that speaks TLS only, also on its cluster bus.
      const port = await freePort()
      const tlsArgs = ['--tls-cert-file', join(dir, 'server.crt'), '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', join(dir, 'ca.crt')]
      const node = new OwnRedis(0, [
        '--tls-port',
        String(port),
        ...tlsArgs,
        '--tls-auth-clients',
        'no',
        '--tls-cluster',
        'yes',
        '--cluster-enabled',
        'yes',
        '--cluster-announce-ip',
        '127.0.0.1',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
      ])
      await node.start()
      try {
        const cli = (...args: string[]) => execFileSync('redis-cli', ['--tls', '--cacert', join(dir, 'ca.crt'), '-p', String(port), ...args]).toString()
        cli('cluster', 'addslotsrange', '0', '16383')
        await eventually(() => cli('cluster', 'info').includes('cluster_state:ok'), 10_000, 'cluster_state:ok')
        const connection = { cluster: { nodes: [`rediss://127.0.0.1:${port}`] }, tls: { ca } }
        const writer = new RedisServerCache(connection, { keyPrefix: 'tls-cluster:' })
        const reader = new RedisServerCache(connection, { keyPrefix: 'tls-cluster:' })
        try {
          await writer.set('k', { tls: true })
          expect(await reader.get('k')).toEqual({ tls: true })
          expect(await writer.listPushIndexed('l', 'l:counter', { a: 1 })).toBe(0)
          const seen: number[] = []
          const live = new CachingPubSub(null, reader).subscribeWithReplay('topic')
          const reading = (async () => {
            for await (const event of live) if (seen.push(event.index) === 3) break
          })()
          const publisher = new CachingPubSub(null, writer)
          for (let n = 0; n < 3; n++) await publisher.publish('topic', { type: 'chunk', runId: 'r', data: { n } })
          await within(reading, 5_000, 'the live events over TLS')
          expect(seen).toEqual([0, 1, 2])
          await writer.clear()
        } finally {
          await Promise.all([writer.close(), reader.close()])
        }
      } finally {
        await node.stop()
      }
    })
  })

  it('close() refuses later calls and lets Node exit', async () => {
    const cache = new RedisServerCache({ url: REDIS_URL })
    await cache.get('k')
    await cache.close()
    await expect(cache.get('k')).rejects.toMatchObject({ code: 'ERR_CACHE_CLOSED' })
    const script = `
      const { RedisServerCache } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))})
      const cache = new RedisServerCache({ url: ${JSON.stringify(REDIS_URL)} })
      cache.set('exit-probe', 1, 1000).then(() => cache.close()).then(() => console.log('closed'))
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => (child.kill('SIGKILL'), resolve(null)), 10_000)
      child.once('exit', (c) => (clearTimeout(timer), resolve(c)))
    })
    expect(out.trim()).toBe('closed')
    expect(code).toBe(0)
  })
})

/** Whether `call` resolves (a call that fails now may succeed later). */
function succeeds(call: Promise<unknown>): Promise<boolean> {
  return call.then(
    () => true,
    () => false,
  )
}

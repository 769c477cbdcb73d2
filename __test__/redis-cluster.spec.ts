// What only a Redis Cluster does to a stream: a topic's slot moving to another
// primary while a reader in another process waits on it, and a primary
// failing over to its replica mid-stream.
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { Redis as IORedis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'

import { CachingPubSub, RedisServerCache, type PubSubEvent, type SubscribeOptions } from '../dist/index.js'
import { eventually, freePort, OwnRedis, redisClusterNodes, TOPIC_PREFIX, uniquePrefix } from './helpers.js'
import { event } from './pubsub-backends.js'

/** A connection to one node, not following redirects (to drive the cluster itself). */
function node(url: string): IORedis {
  return new IORedis(url, { lazyConnect: false, maxRetriesPerRequest: 1 })
}

/** The node of `nodes` that serves `slot` as a primary. */
async function ownerOf(nodes: IORedis[], slot: number): Promise<IORedis> {
  const slots = (await nodes[0]!.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][]
  const range = slots.find(([start, end]) => start <= slot && slot <= end)
  if (!range) throw new Error(`no node serves slot ${slot}`)
  const port = range[2][1]
  const owner = nodes.find((n) => n.options.port === port)
  if (!owner) throw new Error(`slot ${slot} is on port ${port}, not one of ours`)
  return owner
}

/** Moves `slot` from `source` to `target` with its keys (what `redis-cli --cluster reshard` does). */
async function moveSlot(nodes: IORedis[], slot: number, source: IORedis, target: IORedis): Promise<void> {
  const [sourceId, targetId] = (await Promise.all([source.call('CLUSTER', 'MYID'), target.call('CLUSTER', 'MYID')])) as string[]
  await target.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId!)
  await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId!)
  for (;;) {
    const keys = (await source.call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]
    if (keys.length === 0) break
    await source.call('MIGRATE', '127.0.0.1', String(target.options.port), '', 0, 5000, 'KEYS', ...keys)
  }
  for (const n of nodes) await n.call('CLUSTER', 'SETSLOT', slot, 'NODE', targetId!)
}

/** A reader's events, collected as they arrive, and the error that ended it, if one did. */
function collect(
  pubsub: CachingPubSub,
  topic: string,
  options: SubscribeOptions = {},
): { seen: PubSubEvent[]; failure: { error?: unknown }; stop: () => Promise<unknown> } {
  const seen: PubSubEvent[] = []
  const failure: { error?: unknown } = {}
  const iterator = pubsub.subscribeWithReplay(topic, options)
  const done = (async () => {
    try {
      for await (const e of iterator) seen.push(e)
    } catch (error) {
      failure.error = error
    }
  })()
  return { seen, failure, stop: async () => (await iterator.return?.(), await done) }
}

/**
 * A writer, and readers on a client of their own (as in another process),
 * under one prefix of a cluster. `close` clears the prefix and closes both.
 */
function twoClients(nodes: string[], keyPrefix: string, options: { connectTimeoutMs?: number; commandTimeoutMs?: number } = {}) {
  const writerCache = new RedisServerCache({ cluster: { nodes } }, { keyPrefix, ...options })
  const readerCache = new RedisServerCache({ cluster: { nodes } }, { keyPrefix, ...options })
  return {
    writer: new CachingPubSub(null, writerCache),
    readers: new CachingPubSub(null, readerCache),
    close: async () => {
      try {
        await writerCache.clear()
      } finally {
        await Promise.all([writerCache.close(), readerCache.close()])
      }
    },
  }
}

const ns = (events: PubSubEvent[]) => events.map((e) => (e.data as { n: number }).n)
const indices = (events: PubSubEvent[]) => events.map((e) => e.index)

describe('CachingPubSub on a Redis Cluster', () => {
  const urls = redisClusterNodes()
  const nodes = urls.map(node)
  afterAll(() => Promise.all(nodes.map((n) => n.quit())))

  it("a reader elsewhere keeps receiving live events when the topic's slot moves to another primary", async () => {
    const prefix = uniquePrefix('slot-move')
    const clients = twoClients(urls, prefix)
    const { writer } = clients
    const reader = collect(clients.readers, 'agent.stream.moving')
    try {
      for (let n = 0; n < 5; n++) await writer.publish('agent.stream.moving', event(n))
      await eventually(() => reader.seen.length === 5, 5_000, 'the events before the move')

      const slot = (await nodes[0]!.call('CLUSTER', 'KEYSLOT', `${prefix}{${TOPIC_PREFIX}agent.stream.moving}`)) as number
      const source = await ownerOf(nodes, slot)
      const target = nodes.find((n) => n !== source)!
      await moveSlot(nodes, slot, source, target)
      expect(await ownerOf(nodes, slot)).toBe(target)

      // The reader is caught up: only a wake-up from its new subscription brings these.
      for (let n = 5; n < 10; n++) await writer.publish('agent.stream.moving', event(n))
      await eventually(() => reader.seen.length === 10, 5_000, 'the events after the move')
      expect(ns(reader.seen)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      expect(indices(reader.seen)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    } finally {
      await reader.stop()
      await clients.close()
    }
  })

  it('a { url } that names one node of a cluster is ERR_INVALID_OPTION, pointing to { cluster }', async () => {
    const prefix = uniquePrefix('one-node')
    const single = new RedisServerCache({ url: urls[0]! }, { keyPrefix: prefix })
    const whole = new RedisServerCache({ cluster: { nodes: urls } }, { keyPrefix: prefix })
    try {
      // A third of the slots live on this node: among 20 keys, some do not.
      const errors = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          single.set(`k${i}`, i).then(
            () => undefined,
            (e: unknown) => e,
          ),
        ),
      )
      const refused = errors.find((e) => e !== undefined)
      expect(refused).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('{ cluster: { nodes') })
      await whole.clear()
    } finally {
      await Promise.all([single.close(), whole.close()])
    }
  })

  it('an ACL user needs its channels too (&<prefix>*): without them a publish is ERR_REDIS_AUTH, with them live events flow', async () => {
    const prefix = uniquePrefix('cluster-acl')
    const user = `test-acl-${Math.random().toString(36).slice(2)}`
    const grant = async (...rules: string[]) => {
      for (const n of nodes) await n.call('ACL', 'SETUSER', user, 'reset', 'on', '>s3cret-pass', `~${prefix}*`, '+@all', ...rules)
    }
    const asUser = urls.map((url) => `redis://${user}:s3cret-pass@${new URL(url).host}`)
    const clients = twoClients(asUser, prefix)
    const { writer } = clients
    try {
      await grant() // keys only
      await expect(writer.publish('agent.stream.acl', event(0))).rejects.toMatchObject({ code: 'ERR_REDIS_AUTH' })
      expect(await writer.getHistory('agent.stream.acl')).toEqual([]) // the script stored nothing

      await grant(`&${prefix}*`)
      const reader = collect(clients.readers, 'agent.stream.acl')
      try {
        for (let n = 0; n < 3; n++) await writer.publish('agent.stream.acl', event(n))
        await eventually(() => reader.seen.length === 3, 5_000, 'live events for the ACL user')
        expect(ns(reader.seen)).toEqual([0, 1, 2])
      } finally {
        await reader.stop()
      }
    } finally {
      await clients.close()
      for (const n of nodes) await n.call('ACL', 'DELUSER', user)
    }
  })

  describe('with a primary that fails over to its replica', () => {
    const servers: OwnRedis[] = []
    afterAll(() => Promise.all(servers.map((s) => s.stop())))
    const cli = (port: string, ...args: string[]) => execFileSync('redis-cli', ['-p', port, ...args]).toString()
    /** A cluster node's redis-server arguments: its config file `name` in `dir`, and its node timeout. */
    const clusterNodeArgs = (dir: string, name: string, nodeTimeoutMs: number) => [
      ...['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-node-timeout', String(nodeTimeoutMs)],
      ...['--repl-diskless-sync-delay', '0', '--cluster-config-file', join(dir, `${name}.conf`), '--dir', dir],
    ]
    const offset = (port: string) => /master_repl_offset:(\d+)/.exec(cli(port, 'info', 'replication'))?.[1]

    it('a writer and a reader elsewhere carry on, every event once and in order', async () => {
      // A cluster of its own: one primary owning every slot, and its replica.
      const dir = mkdtempSync(join(tmpdir(), 'durable-agent-failover-'))
      for (const name of ['primary', 'replica']) {
        const port = await freePort()
        const server = new OwnRedis(port, clusterNodeArgs(dir, name, 2000))
        await server.start()
        servers.push(server)
      }
      const [primaryPort, replicaPort] = servers.map((s) => String(s.port)) as [string, string]
      cli(primaryPort, 'cluster', 'addslotsrange', '0', '16383')
      cli(replicaPort, 'cluster', 'meet', '127.0.0.1', primaryPort)
      // Met once the replica sees the primary, handshake done, with its slots.
      await eventually(() => / connected 0-16383/.test(cli(replicaPort, 'cluster', 'nodes')), 10_000, 'the nodes to meet')
      const primaryId = cli(primaryPort, 'cluster', 'myid').trim()
      cli(replicaPort, 'cluster', 'replicate', primaryId)
      await eventually(() => /master_link_status:up/.test(cli(replicaPort, 'info', 'replication')), 10_000, 'the replica to sync')
      await eventually(() => cli(primaryPort, 'cluster', 'info').includes('cluster_state:ok'), 10_000, 'cluster_state:ok')

      const own = servers.map((s) => s.url)
      const prefix = uniquePrefix('failover')
      const clients = twoClients(own, prefix)
      const { writer } = clients
      const reader = collect(clients.readers, 'agent.stream.failover')
      try {
        for (let n = 0; n < 5; n++) await writer.publish('agent.stream.failover', event(n))
        await eventually(() => reader.seen.length === 5, 5_000, 'the events before the failover')
        await eventually(() => offset(replicaPort) === offset(primaryPort), 10_000, 'the replica to catch up')

        // A manual failover: the replica takes over and the old primary becomes its replica.
        cli(replicaPort, 'cluster', 'failover')
        await eventually(() => /role:master/.test(cli(replicaPort, 'info', 'replication')), 10_000, 'the replica to take over')

        // Writes go to the new primary (the client follows the MOVED reply);
        // the reader's subscription follows it too.
        for (let n = 5; n < 10; n++) await writer.publish('agent.stream.failover', event(n))
        await eventually(() => reader.seen.length >= 10, 10_000, 'the events after the failover')
        expect(ns(reader.seen)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        expect(indices(reader.seen)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      } finally {
        await reader.stop()
        await clients.close()
      }
    })

    it('when the primary dies, writes go on once its replica takes over, and a reader resumes from its last index', async () => {
      // Three primaries (a failover needs a majority of them to vote) and a
      // replica of the one that owns the topic.
      const dir = mkdtempSync(join(tmpdir(), 'durable-agent-kill-'))
      const start = async (name: string) => {
        const server = new OwnRedis(await freePort(), clusterNodeArgs(dir, name, 1000))
        await server.start()
        servers.push(server)
        return server
      }
      const primaries = [await start('a'), await start('b'), await start('c')]
      const replica = await start('replica')
      const ports = primaries.map((p) => String(p.port))
      execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
      await eventually(() => ports.every((p) => cli(p, 'cluster', 'info').includes('cluster_state:ok')), 10_000, 'cluster_state:ok')
      const prefix = uniquePrefix('kill')
      const topic = 'agent.stream.kill'
      const slot = Number(cli(ports[0]!, 'cluster', 'keyslot', `${prefix}{${TOPIC_PREFIX}${topic}}`))
      // `CLUSTER NODES`: id, host:port@bus, flags, ..., then the slot ranges from the 9th field.
      const serves = (line: string) =>
        line
          .split(' ')
          .slice(8)
          .some((range) => {
            const [from, to = from] = range.split('-').map(Number)
            return from! <= slot && slot <= to!
          })
      const ownerLine = cli(ports[0]!, 'cluster', 'nodes').split('\n').find(serves)!
      const owner = primaries.find((p) => ownerLine.includes(`:${p.port}@`))!
      const replicaPort = String(replica.port)
      cli(replicaPort, 'cluster', 'meet', '127.0.0.1', String(owner.port))
      await eventually(
        () =>
          cli(replicaPort, 'cluster', 'nodes')
            .split('\n')
            .filter((line) => / connected \d/.test(line)).length === 3,
        10_000,
        'the replica to meet the cluster',
      )
      cli(replicaPort, 'cluster', 'replicate', cli(String(owner.port), 'cluster', 'myid').trim())
      await eventually(() => /master_link_status:up/.test(cli(replicaPort, 'info', 'replication')), 10_000, 'the replica to sync')

      // The survivors as seed nodes: the client must find the promoted replica itself.
      const seeds = primaries.filter((p) => p !== owner).map((p) => p.url)
      const clients = twoClients(seeds, prefix, { connectTimeoutMs: 1000, commandTimeoutMs: 1000 })
      const { writer, readers } = clients
      const first = collect(readers, topic)
      let resumed: ReturnType<typeof collect> | undefined
      try {
        for (let n = 0; n < 5; n++) await writer.publish(topic, event(n))
        await eventually(() => first.seen.length === 5, 5_000, 'the events before the kill')
        // Acknowledged and replicated: Redis replicates asynchronously, so a
        // write the dead primary had not passed on would be lost with it.
        await eventually(() => offset(replicaPort) === offset(String(owner.port)), 10_000, 'the replica to catch up')

        // The other primaries elect the replica only if they know it as the
        // owner's replica: wait for that gossip before the kill.
        const survivors = primaries.filter((p) => p !== owner).map((p) => String(p.port))
        const ownerId = cli(String(owner.port), 'cluster', 'myid').trim()
        const known = () =>
          survivors.every((port) =>
            cli(port, 'cluster', 'nodes')
              .split('\n')
              .some((line) => line.includes(`:${replicaPort}@`) && line.includes(`slave ${ownerId}`)),
          )
        await eventually(known, 10_000, 'every primary to know the replica')

        await owner.stop() // SIGKILL
        // Failed over once every surviving primary names the replica as the
        // slot's owner; a write during the failover itself fails with a coded
        // error (it went to the dead node), to be retried by the caller.
        const failedOver = () => survivors.every((port) => cli(port, 'cluster', 'nodes').split('\n').find(serves)?.includes(`:${replicaPort}@`))
        await eventually(failedOver, 15_000, 'the replica to be promoted, as every primary sees it')
        for (let n = 5; n < 10; n++) await writer.publish(topic, event(n))

        // The first reader either rode out the outage or ended with a coded
        // error (its read met the dead primary); a client then resumes after
        // the last event it saw, which the resumed reader checks is still
        // there (it was replicated: no ERR_TOPIC_REWRITTEN), and gets every
        // event once, in order.
        await eventually(() => first.seen.length === 10 || first.failure.error !== undefined, 10_000, 'the first reader to finish or fail')
        if (first.failure.error !== undefined) {
          expect(first.failure.error).toMatchObject({ code: expect.stringMatching(/^ERR_REDIS_(TIMEOUT|UNAVAILABLE)$/) })
        }
        const from = first.seen.length
        resumed = collect(readers, topic, { after: first.seen.at(-1)! })
        for (let n = 10; n < 15; n++) await writer.publish(topic, event(n))
        await eventually(() => resumed!.seen.length === 15 - from, 10_000, 'the resumed reader to get history and live events')
        expect(ns([...first.seen, ...resumed.seen])).toEqual([...Array(15).keys()])
        expect(indices([...first.seen, ...resumed.seen])).toEqual([...Array(15).keys()])
        expect(resumed.failure.error).toBeUndefined()
      } finally {
        await first.stop()
        await resumed?.stop()
        await clients.close()
      }
    })
  })
})

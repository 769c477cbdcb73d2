// A bare Redis connection for the bench's ceilings: a net.Socket, commands
// written as RESP by hand, replies counted but not decoded. It has none of a
// client library's costs (no command objects, no reply values, no thread
// hop), so a rate it reaches bounds what any Node client can reach on this
// machine over one connection.
import net from 'node:net'
import { once } from 'node:events'
import { inFlight, sequential, withIsoDate } from './lib.mjs'

/** One command as RESP text. */
export function resp(args) {
  let text = `*${args.length}\r\n`
  for (const arg of args) text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
  return text
}

/**
 * Connects to a `redis://` URL (AUTH and SELECT from it). Resolves `null` for
 * `rediss://`: the ceilings are then not measured.
 * `call(text)` writes one command's RESP and resolves at its reply (rejects
 * at an error reply); commands may be in flight together (pipelining).
 */
export async function connectBare(redisUrl) {
  const url = new URL(redisUrl)
  if (url.protocol !== 'redis:') return null
  const socket = net.connect(Number(url.port || 6379), url.hostname || '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  const waiting = []
  let pending = Buffer.alloc(0)
  const failAll = (error) => {
    for (const waiter of waiting.splice(0)) waiter.reject(error)
  }
  socket.on('error', failAll)
  socket.on('close', () => failAll(new Error('bare Redis connection closed')))
  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk
    let at = 0
    for (let end; (end = replyEnd(pending, at)) >= 0; at = end) {
      const waiter = waiting.shift()
      if (pending[at] === 0x2d /* '-' */) waiter?.reject(new Error(pending.toString('utf8', at + 1, end - 2)))
      else waiter?.resolve()
    }
    pending = pending.subarray(at)
  })
  const call = (text) =>
    new Promise((resolve, reject) => {
      waiting.push({ resolve, reject })
      socket.write(text)
    })
  if (url.password) {
    const user = decodeURIComponent(url.username || 'default')
    await call(resp(['AUTH', user, decodeURIComponent(url.password)]))
  }
  const db = url.pathname.replace(/^\//, '')
  if (db) await call(resp(['SELECT', db]))
  return { call, close: () => socket.destroy() }
}

/**
 * Rep functions for `compare()` that store each of `events` (as JSON text,
 * serialised up front) with the command `store(key, text)` on `bare`,
 * awaited one by one (`mode` 'seq') or 64 in flight ('par'), in a key of
 * their own under `keyPrefix`, deleted afterwards. `NaN` without a bare
 * connection (a TLS URL).
 */
export function bareStoreReps(bare, keyPrefix, events, store) {
  const texts = events.map((event) => JSON.stringify(withIsoDate(event)))
  return (mode, count) => async (rep) => {
    if (!bare) return NaN
    const n = rep < 0 ? Math.ceil(count / 4) : count
    const key = `${keyPrefix}bare:${mode}:${rep}`
    const op = (i) => bare.call(resp(store(key, texts[i % texts.length])))
    const rate = mode === 'seq' ? await sequential(n, op) : await inFlight(n, 64, op)
    await bare.call(resp(['DEL', key]))
    return rate
  }
}

/** Where the RESP2 reply starting at `at` ends, or -1 while it is incomplete. */
function replyEnd(buf, at) {
  const eol = buf.indexOf('\r\n', at)
  if (eol < 0) return -1
  const type = buf[at]
  if (type === 0x24 /* '$' */) {
    const len = Number(buf.toString('latin1', at + 1, eol))
    if (len < 0) return eol + 2
    const end = eol + 2 + len + 2
    return end <= buf.length ? end : -1
  }
  if (type === 0x2a /* '*' */) {
    let end = eol + 2
    for (let n = Number(buf.toString('latin1', at + 1, eol)); n > 0; n--) {
      end = replyEnd(buf, end)
      if (end < 0) return -1
    }
    return end
  }
  return eol + 2 // '+', '-', ':'
}

// Child process of the http-resume section: the SSE clients, in a process of
// their own (as browsers or other services are), so the time a client waits
// is not time the servers' process spends on its own work. Commands come
// over IPC, one at a time; each gets one reply:
//   { cmd: 'reconnect', url, headers, samples } -> { ms: [...] }: per sample,
//     from sending the request to the first `data:` line of its answer;
//   { cmd: 'connect', url, clients, expected } -> { connected: true } once
//     every client has its answer's headers; then each reads to the end of
//     its stream, counting `data:` lines, and the child replies
//     { doneAt, counts } (doneAt: performance.timeOrigin + now(), when the
//     last one ended).
const now = () => performance.now()

/** Reads an SSE body, counting `data:` lines; stops early when `stop(count)` says so. */
async function countData(response, stop) {
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let carry = ''
  let count = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return count
    const text = carry + decoder.decode(value, { stream: true })
    let at = -1
    while ((at = text.indexOf('\ndata: ', at + 1)) !== -1) count++
    carry = text.slice(-6)
    if (stop?.(count)) {
      await reader.cancel()
      return count
    }
  }
}

async function reconnect({ url, headers, samples }) {
  const ms = []
  for (let i = 0; i < samples; i++) {
    const start = now()
    const response = await fetch(url, { headers })
    if (response.status !== 200) throw new Error(`reconnect answered ${response.status}`)
    await countData(response, (count) => count > 0)
    ms.push(now() - start)
  }
  return { ms }
}

async function connect({ url, clients, expected }) {
  const responses = await Promise.all(Array.from({ length: clients }, () => fetch(url)))
  if (responses.some((r) => r.status !== 200)) throw new Error('a fan-out client was refused')
  process.send({ connected: true })
  const counts = await Promise.all(responses.map((response) => countData(response)))
  if (counts.some((count) => count < expected)) throw new Error(`a fan-out client got ${Math.min(...counts)} of ${expected} events`)
  return { doneAt: performance.timeOrigin + now(), counts: counts.length }
}

process.on('message', (message) => {
  const run = message.cmd === 'reconnect' ? reconnect(message) : connect(message)
  run.then(
    (reply) => process.send(reply),
    (error) => process.send({ error: String(error?.stack ?? error) }),
  )
})

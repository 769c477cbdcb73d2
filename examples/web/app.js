// The demo page: a chat whose answers are durable runs, read with the
// package's resumableStream. What the page has applied (each answer's text
// and the index of its last event) is saved in sessionStorage with every
// part, so a reload continues each answer right after the last part it
// showed. `/?run=<id>` watches one run (open it in a second tab).
import { resumableStream } from '/client.js'

const watching = new URLSearchParams(location.search).get('run')
const storageKey = watching ? `demo:watch:${watching}` : 'demo:chat'
const $ = (id) => document.getElementById(id)

/** { messages: [{ role, text, runId?, status?, lastEventId?, tools?, pending? }] } */
const state = JSON.parse(sessionStorage.getItem(storageKey) ?? 'null') ?? {
  messages: watching ? [{ role: 'assistant', runId: watching, text: '', status: 'running', tools: [] }] : [],
}
const save = () => sessionStorage.setItem(storageKey, JSON.stringify(state))

const STATUS_OF_PART = { finish: 'finished', error: 'failed', abort: 'aborted' }

/** Applies one part of a run to its message. */
function apply(message, part) {
  if (part.type === 'text-delta') message.text += part.text
  else if (part.type === 'start-step' && message.text !== '') message.text += '\n\n'
  else if (part.type === 'tool-approval-request') message.tools.push(`${part.toolCall.toolName}: waiting for approval`)
  else if (part.type === 'tool-result') message.tools.push(`${part.toolName}: done`)
  else if (part.type === 'tool-output-denied') message.tools.push(`${part.toolName}: declined`)
  else if (part.type === 'error') message.error = part.error.message
  else if (part.type === 'abort') message.error = part.reason ? `stopped: ${part.reason}` : 'stopped'
  if (STATUS_OF_PART[part.type]) message.status = STATUS_OF_PART[part.type]
}

/** Reads `stream` into `message` until the run ends or waits for approval. */
async function follow(message, stream) {
  message.status = 'running'
  render()
  try {
    for await (const part of stream) {
      apply(message, part)
      message.lastEventId = stream.lastEventId
      save()
      render()
    }
    if (stream.end) message.status = stream.end.status
    message.pending = stream.end?.status === 'suspended' ? stream.end.pendingApprovals : undefined
  } catch (error) {
    message.status = 'failed'
    message.error = error.code ? `${error.code}: ${error.message}` : String(error)
  }
  save()
  render()
  if (message.status === 'suspended') waitForDecision(message)
}

const streamUrl = (runId) => `/api/runs/${encodeURIComponent(runId)}/stream`
const resume = (message) =>
  follow(message, resumableStream(streamUrl(message.runId), message.lastEventId === undefined ? {} : { lastEventId: message.lastEventId }))

/** A run waiting for approval: decided here (the buttons) or in another tab (seen by polling its status). */
async function waitForDecision(message) {
  while (message.status === 'suspended') {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const run = await fetch(`/api/runs/${encodeURIComponent(message.runId)}`).then((r) => (r.ok ? r.json() : undefined))
    if (message.status === 'suspended' && run && run.status !== 'suspended') return resume(message)
  }
}

async function decide(approved) {
  const message = current()
  if (!message || message.status !== 'suspended') return
  const toolCallId = message.pending?.[0]?.toolCallId
  message.status = 'running'
  render()
  const response = await fetch(`/api/runs/${encodeURIComponent(message.runId)}/${approved ? 'approve' : 'decline'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ toolCallId, ...(approved ? {} : { reason: 'declined in the demo' }) }),
  })
  // The answer streams the continuation; the page reads it from its own position instead (an
  // approval another tab made first is a 409 here, and the same continuation).
  await response.body?.cancel()
  resume(message)
}

const current = () => state.messages.filter((m) => m.role === 'assistant').at(-1)

function ask(question) {
  state.messages.push({ role: 'user', text: question })
  const conversation = state.messages.map(({ role, text }) => ({ role, content: text }))
  const message = { role: 'assistant', runId: crypto.randomUUID(), text: '', status: 'running', tools: [] }
  state.messages.push(message)
  save()
  follow(message, resumableStream('/api/runs', { body: { messages: conversation, runId: message.runId } }))
}

function render() {
  const list = $('messages')
  list.replaceChildren(
    ...state.messages.map((message) => {
      const div = document.createElement('div')
      div.className = `message ${message.role}`
      const text = document.createElement('span')
      text.className = 'text'
      text.textContent = message.text
      div.append(text)
      if (message.role === 'assistant') {
        div.dataset.runId = message.runId
        div.dataset.status = message.status
        const meta = document.createElement('span')
        meta.className = 'meta'
        meta.textContent = [message.status, ...message.tools, message.error].filter(Boolean).join(' · ') + ' · '
        const link = document.createElement('a')
        link.href = `/?run=${encodeURIComponent(message.runId)}`
        link.target = '_blank'
        link.rel = 'noopener'
        link.textContent = 'watch in a new tab'
        meta.append(link)
        div.append(meta)
      }
      return div
    }),
  )
  const last = current()
  $('stop').disabled = last?.status !== 'running' && last?.status !== 'suspended'
  $('send').disabled = watching !== null || last?.status === 'running' || last?.status === 'suspended'
  $('question').disabled = watching !== null
  const pending = last?.status === 'suspended' ? last.pending?.[0] : undefined
  $('approval').hidden = !pending
  if (pending) {
    $('approval-tool').textContent = pending.toolName
    $('approval-args').textContent = JSON.stringify(pending.args)
  }
}

async function inspect() {
  const [{ runs }, info] = await Promise.all([fetch('/api/runs').then((r) => r.json()), fetch('/api/info').then((r) => r.json())])
  $('server').textContent = `this server: port ${info.port}, pid ${info.pid}, store ${info.store}`
  $('runs').replaceChildren(
    ...runs.map((run) => {
      const row = document.createElement('tr')
      const pid = run.drivenBy?.split(':')[0]
      const lease = run.drivenHere ? `this server (:${info.port}, pid ${pid})` : run.driven ? `another server (pid ${pid})` : 'nobody (recoverable)'
      for (const [value, className] of [[run.runId.slice(0, 8), 'id'], [run.step], [run.nextIndex], [lease]]) {
        const cell = document.createElement('td')
        cell.textContent = String(value)
        if (className) cell.className = className
        row.append(cell)
      }
      return row
    }),
  )
}

$('ask').addEventListener('submit', (event) => {
  event.preventDefault()
  const question = $('question').value.trim()
  if (!question) return
  $('question').value = ''
  ask(question)
})
$('stop').addEventListener('click', () => {
  const message = current()
  if (message) fetch(`/api/runs/${encodeURIComponent(message.runId)}/stop`, { method: 'POST', body: '{}' })
})
$('approve').addEventListener('click', () => decide(true))
$('decline').addEventListener('click', () => decide(false))

render()
for (const message of state.messages) {
  if (message.role !== 'assistant') continue
  if (message.status === 'running') resume(message)
  else if (message.status === 'suspended') waitForDecision(message)
}
inspect()
setInterval(() => inspect().catch(() => {}), 1000)

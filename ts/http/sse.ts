/**
 * Server-Sent Events framing, as the handler writes it. Data is always one
 * line of JSON (JSON text has no raw newlines), so every message is one
 * `data:` line.
 */

/** Headers of every SSE response: no caching or transforming, and no buffering in nginx-style proxies. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
}

/** A message: `data` (one line), with the event index as `id` when it has one, and an event name. */
export function sseMessage(data: string, id?: number, event?: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}${id === undefined ? '' : `id: ${id}\n`}data: ${data}\n\n`
}

/** A comment: clients ignore it; it keeps proxies and load balancers from closing an idle stream. */
export const SSE_HEARTBEAT = ': ping\n\n'

/** How long a client waits before reconnecting (EventSource honours it; our client starts its backoff there). */
export function sseRetry(ms: number): string {
  return `retry: ${ms}\n\n`
}

/**
 * The web demo (`npm start`) in headless Chromium (Debian's `chromium`,
 * driven by playwright-core): a reload mid-answer ends with exactly the
 * run's text; a second tab watches a run live; a stop in one tab ends the
 * other tab's stream with `abort`; an approval made in the page continues
 * the run. A screenshot is kept in test-artefacts/ (git-ignored).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import { expectedText } from '../examples/web/demo-agent.mjs'
import { startDemoServer } from '../examples/web/server.mjs'
import { Gate } from './http-helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTEFACTS = join(__dirname, '..', 'test-artefacts')
const WAIT_MS = 20_000

const gate = new Gate()
let demo: Awaited<ReturnType<typeof startDemoServer>>
let context: BrowserContext
let profile: string

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`)
  demo = await startDemoServer({ port: 0, pace: gate.pass })
  profile = mkdtempSync(join(tmpdir(), 'durable-agent-chromium-'))
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
})
afterAll(async () => {
  await context?.close()
  await demo?.close()
  if (profile) rmSync(profile, { recursive: true, force: true })
})
afterEach(() => gate.open())

/** The page's last answer: its run, status and text. */
async function answer(page: Page): Promise<{ runId: string | null; status: string | null; text: string }> {
  // (The test has no DOM typings: the element as far as it is read.)
  type Element = { dataset: Record<string, string | undefined>; querySelector(selector: string): { textContent: string | null } | null }
  return page
    .locator('.assistant')
    .last()
    .evaluate((el: Element) => ({
      runId: el.dataset.runId ?? null,
      status: el.dataset.status ?? null,
      text: el.querySelector('.text')!.textContent ?? '',
    }))
}

async function waitFor(page: Page, check: (a: Awaited<ReturnType<typeof answer>>) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    if ((await page.locator('.assistant').count()) > 0 && check(await answer(page))) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await answer(page).catch(() => null))}`)
    await page.waitForTimeout(20)
  }
}

const words = (text: string) => text.split(' ').filter(Boolean).length

async function ask(page: Page, question: string): Promise<void> {
  await page.goto(demo.url)
  await page.fill('#question', question)
  await page.click('#send')
}

describe('the web demo in Chromium', () => {
  it('a reload mid-answer continues the same answer from the next event: the final text is exactly the run', async () => {
    const page = await context.newPage()
    const resumes: (string | null)[] = []
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.endsWith('/stream')) resumes.push(request.headers()['last-event-id'] ?? null)
    })
    gate.allow(8)
    const question = 'reload me in the browser'
    await ask(page, question)
    await waitFor(page, (a) => words(a.text) >= 8, 'eight words')
    const before = await answer(page)
    expect(before.status).toBe('running')
    await page.reload()
    await waitFor(page, (a) => a.text === before.text, 'the restored answer')
    gate.open()
    await waitFor(page, (a) => a.status === 'finished', 'the end of the answer')
    expect((await answer(page)).text).toBe(expectedText(question))
    expect(resumes).toHaveLength(1)
    expect(Number(resumes[0])).toBeGreaterThan(8)
    await page.close()
  })

  it('a second tab opened on the run watches it live', async () => {
    const first = await context.newPage()
    gate.allow(4)
    const question = 'watch me from another tab'
    await ask(first, question)
    await waitFor(first, (a) => words(a.text) >= 4, 'some words')
    const { runId } = await answer(first)
    const second = await context.newPage()
    await second.goto(`${demo.url}/?run=${runId}`)
    await waitFor(second, (a) => a.runId === runId && words(a.text) >= 4 && a.status === 'running', 'the watcher to catch up')
    await first.waitForSelector('#runs tr', { timeout: WAIT_MS }) // the inspector lists the run
    // With its lease owner: this server, whose process is this one.
    const rows = await first.$$eval('#runs tr', (trs) => trs.map((tr) => tr.textContent ?? ''))
    expect(rows.find((row) => row.includes(runId!.slice(0, 8)))).toContain(`this server (:${new URL(demo.url).port}, pid ${process.pid})`)
    mkdirSync(ARTEFACTS, { recursive: true })
    await first.screenshot({ path: join(ARTEFACTS, 'web-demo-streaming.png') })
    gate.open()
    await waitFor(second, (a) => a.status === 'finished', 'the watcher to see the end')
    expect((await answer(second)).text).toBe(expectedText(question))
    await first.close()
    await second.close()
  })

  it("a stop in one tab ends the other tab's stream with abort", async () => {
    const first = await context.newPage()
    gate.allow(3)
    await ask(first, 'stop me from the other tab')
    await waitFor(first, (a) => words(a.text) >= 3, 'some words')
    const { runId } = await answer(first)
    const second = await context.newPage()
    await second.goto(`${demo.url}/?run=${runId}`)
    await waitFor(second, (a) => words(a.text) >= 3, 'the watcher to catch up')
    await second.click('#stop')
    await waitFor(first, (a) => a.status === 'aborted', 'the first tab to see the abort')
    await waitFor(second, (a) => a.status === 'aborted', 'the second tab to see the abort')
    expect((await demo.agent.getRun(runId!)).status).toBe('aborted')
    await first.close()
    await second.close()
  })

  it('approving the refund in the page continues the run to its end (screenshot in test-artefacts/)', async () => {
    const page = await context.newPage()
    await ask(page, 'please refund my order')
    await page.waitForSelector('#approval:not([hidden])', { timeout: WAIT_MS })
    expect(await page.textContent('#approval-tool')).toBe('issueRefund')
    mkdirSync(ARTEFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTEFACTS, 'web-demo-approval.png') })
    await page.click('#approve')
    await waitFor(page, (a) => a.status === 'finished', 'the continuation')
    const { text, runId } = await answer(page)
    expect(text).toBe(`${expectedText('please refund my order')}\n\n${text.split('\n\n')[1]}`)
    expect(text.split('\n\n')[1]).toMatch(/^Refund R-[0-9a-f]{8} issued: 42 EUR for order A-1001\.$/)
    expect((await demo.agent.getRun(runId!)).status).toBe('finished')
    await page.screenshot({ path: join(ARTEFACTS, 'web-demo.png') })
    await page.close()
  })
})

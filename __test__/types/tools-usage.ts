/**
 * Compiled (never run) by types.spec.ts with `tsc --noEmit`: the typings
 * users get (`dist/index.d.ts`) take tools made with the AI SDK's `tool()`
 * (ai 6 and ai 5) and Mastra's `createTool`, and plain tool objects, without
 * casts. The `@ts-expect-error` lines fail the compile if the typings become
 * too loose (`any`) to catch those mistakes.
 */
import { createTool } from '@mastra/core/tools'
import { jsonSchema, tool as toolV6 } from 'ai'
import { MockLanguageModelV3 } from 'ai/test'
import { tool as toolV5 } from 'ai5'
import { z } from 'zod'

import { createDurableAgent, type Tool, type ToolSet } from '../../dist/index.js'

const model = new MockLanguageModelV3()
const city = z.object({ city: z.string() })

const weatherV6 = toolV6({ description: 'Weather', inputSchema: city, execute: async ({ city }) => ({ city, sunny: true }) })
const approvedV6 = toolV6({
  inputSchema: city,
  needsApproval: async ({ city }, { toolCallId, messages }) => city.length + toolCallId.length + messages.length > 0,
  execute: async ({ city }, { abortSignal, messages }) => ({ city, aborted: abortSignal?.aborted, seen: messages.length }),
})
const jsonV6 = toolV6({ inputSchema: jsonSchema<{ q: string }>({ type: 'object', properties: { q: { type: 'string' } } }), execute: async ({ q }) => q })
const weatherV5 = toolV5({ description: 'Weather', inputSchema: city, execute: async ({ city }, { toolCallId }) => `${city} ${toolCallId}` })
const weatherMastra = createTool({
  id: 'weather',
  description: 'Weather',
  inputSchema: city,
  requireApproval: true,
  execute: async ({ city }) => ({ city }),
})
const noSchemaMastra = createTool({ id: 'now', description: 'The time', execute: async () => Date.now() })

/** Plain tools: `execute`'s options are ours, typed. */
const refund: Tool<{ order: string }, string> = {
  description: 'Refund an order',
  inputSchema: z.object({ order: z.string() }),
  needsApproval: (input, { toolCallId }) => input.order.length > 0 && toolCallId !== '',
  execute: async ({ order }, { idempotencyKey, runId, abortSignal, messages }) =>
    `${order} ${idempotencyKey} ${runId} ${abortSignal.aborted} ${messages.map((m) => m.role).join()}`,
}

const tools = { weatherV6, approvedV6, jsonV6, weatherV5, weatherMastra, noSchemaMastra, refund } satisfies ToolSet
createDurableAgent({ agent: { id: 'all', model, tools } })
createDurableAgent({
  agent: {
    id: 'inline',
    model,
    tools: {
      weatherV6,
      weatherV5,
      weatherMastra,
      lookup: {
        inputSchema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
        // Contextually typed: `options` is ours.
        execute: async (input: { q: string }, options) => `${input.q} ${options.idempotencyKey}`,
      },
    },
  },
})

// Mistakes the typings catch.
createDurableAgent({
  agent: {
    id: 'wrong',
    model,
    tools: {
      // @ts-expect-error a tool is an object
      number: 42,
      // @ts-expect-error execute must be a function
      notAFunction: { inputSchema: { type: 'object' }, execute: 'run' },
      // @ts-expect-error needsApproval is a boolean or a function
      approval: { inputSchema: { type: 'object' }, needsApproval: 'yes' },
      // @ts-expect-error execute's options are ours (no `foo`)
      options: { inputSchema: { type: 'object' }, execute: async (_input: unknown, options: { foo: number }) => options.foo },
    },
  },
})
createDurableAgent({
  agent: {
    id: 'wrong-inline',
    model,
    tools: {
      typo: {
        inputSchema: { type: 'object' },
        // @ts-expect-error the options have no `idempotencyKye`
        execute: async (_input, options) => options.idempotencyKye,
      },
    },
  },
})
// @ts-expect-error refund's input is typed from its Tool<{ order: string }>
refund.execute?.({ order: 1 }, {} as Parameters<NonNullable<typeof refund.execute>>[1])

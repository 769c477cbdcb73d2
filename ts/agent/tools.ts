/**
 * Tools as the loop uses them: a JSON Schema for the model, an input check,
 * and an `execute` that never throws past the adapter (its failure is the
 * call's result). Accepts AI SDK tools and Mastra `createTool` tools.
 */
import { coded, ErrorCodes } from '../errors.js'
import type { JsonValue, Tool, ToolExecutionOptions } from './types.js'

export interface ResolvedTool {
  name: string
  description?: string
  jsonSchema: object
  validate?: (input: unknown) => Promise<{ success: true; value: unknown } | { success: false; error: Error }>
  execute?: (input: unknown, options: ToolExecutionOptions) => unknown
  needsApproval?: Tool['needsApproval']
}

type AiSchema = { jsonSchema: object | PromiseLike<object>; validate?: (value: unknown) => unknown }

function invalidSchema(name: string, why: string): Error {
  return coded(new TypeError(`tool "${name}": invalid inputSchema: ${why}`), ErrorCodes.INVALID_TOOL_SCHEMA)
}

/** zod and other Standard Schemas go through the AI SDK's `asSchema`, loaded only when needed. */
function viaAiSdk(name: string, schema: object): AiSchema {
  let asSchema: (schema: unknown) => AiSchema
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    asSchema = (require('ai') as { asSchema: typeof asSchema }).asSchema
  } catch {
    throw invalidSchema(name, 'a zod or Standard Schema needs the `ai` package installed (or pass a JSON Schema)')
  }
  try {
    return asSchema(schema)
  } catch (error) {
    throw invalidSchema(name, (error as Error).message)
  }
}

async function resolveSchema(name: string, schema: unknown): Promise<Pick<ResolvedTool, 'jsonSchema' | 'validate'>> {
  if (schema === undefined || schema === null) return { jsonSchema: { type: 'object', properties: {} } }
  if (typeof schema !== 'object') throw invalidSchema(name, `expected a schema object, got ${typeof schema}`)
  let ai: AiSchema | undefined
  if ('jsonSchema' in schema) ai = schema as AiSchema
  else if ('~standard' in schema || '_def' in schema) ai = viaAiSdk(name, schema)
  if (ai) {
    let jsonSchema: unknown
    try {
      jsonSchema = await ai.jsonSchema
    } catch (error) {
      throw invalidSchema(name, (error as Error).message)
    }
    if (!jsonSchema || typeof jsonSchema !== 'object') throw invalidSchema(name, 'it has no JSON Schema form')
    const check = ai.validate?.bind(ai)
    return {
      jsonSchema,
      validate: check && (async (input) => (await check(input)) as Awaited<ReturnType<NonNullable<ResolvedTool['validate']>>>),
    }
  }
  const looksLikeJsonSchema = ['type', 'properties', '$schema', 'anyOf', 'oneOf', 'allOf', '$ref', 'enum'].some((k) => k in schema)
  if (!looksLikeJsonSchema) throw invalidSchema(name, 'not a JSON Schema (no type, properties, $schema, anyOf, oneOf, allOf, $ref or enum)')
  try {
    JSON.stringify(schema)
  } catch (error) {
    throw invalidSchema(name, `not serialisable: ${(error as Error).message}`)
  }
  return { jsonSchema: schema }
}

/** A Mastra tool (`createTool`): `execute(input, context)`, `requireApproval`. */
interface MastraToolLike {
  id?: string
  description?: string
  inputSchema?: unknown
  execute?: (input: unknown, context: object) => unknown
  requireApproval?: boolean | ((input: unknown, ctx?: object) => boolean | PromiseLike<boolean>)
  needsApproval?: Tool['needsApproval']
}

export async function resolveTools(tools: Record<string, unknown> | undefined): Promise<Map<string, ResolvedTool>> {
  const resolved = new Map<string, ResolvedTool>()
  for (const [name, value] of Object.entries(tools ?? {})) {
    if (!value || typeof value !== 'object') throw invalidSchema(name, 'the tool is not an object')
    const tool = value as MastraToolLike
    if (tool.execute !== undefined && typeof tool.execute !== 'function') {
      throw coded(new TypeError(`tool "${name}": execute must be a function`), ErrorCodes.INVALID_TOOL_SCHEMA)
    }
    const approval = tool.needsApproval ?? tool.requireApproval
    resolved.set(name, {
      name,
      description: tool.description,
      ...(await resolveSchema(name, tool.inputSchema)),
      execute: tool.execute && ((input, options) => tool.execute!(input, options)),
      needsApproval:
        typeof approval === 'function'
          ? (input, options) => (approval as (input: unknown, o: object) => boolean | PromiseLike<boolean>)(input, options)
          : approval === true,
    })
  }
  return resolved
}

/** The tool callback's reply for the Rust loop: `{ output }` or `{ error }`. */
export type ToolReply = { output: JsonValue } | { error: { name: string; message: string } }

export async function executeTool(
  tool: ResolvedTool | undefined,
  toolName: string,
  input: unknown,
  options: ToolExecutionOptions,
): Promise<unknown> {
  if (!tool) throw Object.assign(new Error(`model tried to call unavailable tool "${toolName}"`), { name: 'NoSuchToolError' })
  if (!tool.execute) throw Object.assign(new Error(`tool "${toolName}" has no execute function`), { name: 'ToolExecutionError' })
  let value = input
  if (tool.validate) {
    const checked = await tool.validate(input)
    if (!checked.success) {
      throw Object.assign(new Error(`invalid input for tool "${toolName}": ${checked.error.message}`), { name: 'InvalidToolInputError' })
    }
    value = checked.value
  }
  return tool.execute(value, options)
}

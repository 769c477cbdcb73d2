/**
 * Tools as the loop uses them: a JSON Schema for the model, an input check,
 * and an `execute` that never throws past the adapter (its failure is the
 * call's result). Accepts AI SDK tools and Mastra `createTool` tools.
 *
 * Every schema kind is checked the same way, as the AI SDK's `streamText`
 * checks a tool call (`parseToolCall`): the model's input must be JSON text
 * the tool's schema accepts, or the call is invalid, is never run (nor put to
 * the user for approval), and the model gets a `tool-error` so it can retry.
 * zod and Standard Schemas are checked by their own `validate` (through the
 * AI SDK's `asSchema`), as is an AI SDK `jsonSchema()` given one; a plain
 * JSON Schema (or a `jsonSchema()` without `validate`) by Ajv, which needs no
 * `ai` installed.
 */
import { coded, ErrorCodes } from '../errors.js'
import type { JsonValue, Tool, ToolExecutionOptions } from './types.js'
import { errorFrom, errorInfo } from './util.js'

type Validation = { success: true; value: unknown } | { success: false; error: Error }

export interface ResolvedTool {
  name: string
  description?: string
  jsonSchema: object
  /** The schema's own check (zod, Standard Schema, `jsonSchema(..., { validate })`) or Ajv's. */
  validate: (input: unknown) => Promise<Validation>
  execute?: (input: unknown, options: ToolExecutionOptions) => unknown
  needsApproval?: Tool['needsApproval']
}

type AiSchema = { jsonSchema: object | PromiseLike<object>; validate?: (value: unknown) => unknown }

function invalidSchema(name: string, why: string): Error {
  return coded(new TypeError(`tool "${name}": invalid inputSchema: ${why}`), ErrorCodes.INVALID_TOOL_SCHEMA)
}

/** zod and other Standard Schemas (and lazy schemas) go through the AI SDK's `asSchema`, loaded only when needed. */
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

type AjvValidator = ((value: unknown) => boolean) & { errors?: unknown[] | null }
interface AjvInstance {
  compile(schema: object): AjvValidator
  errorsText(errors: unknown[] | null | undefined): string
}

/** One Ajv per draft, made (and Ajv loaded) when the first JSON Schema needs it. */
const ajvs = new Map<string, AjvInstance>()

function ajvFor(draft: '2020-12' | '2019-09' | 'draft-07'): AjvInstance {
  let ajv = ajvs.get(draft)
  if (!ajv) {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const module = draft === '2020-12' ? require('ajv/dist/2020') : draft === '2019-09' ? require('ajv/dist/2019') : require('ajv')
    const addFormats = (require('ajv-formats') as { default: (ajv: AjvInstance) => void }).default
    /* eslint-enable @typescript-eslint/no-require-imports */
    const Ajv = (module as { default: new (options: object) => AjvInstance }).default
    // strict: false, as tool schemas carry keywords of their own (`x-*`,
    // OpenAPI's `example`) that JSON Schema ignores; no logger: an unknown
    // format is an annotation, not something to print; addUsedSchema: false,
    // so two tools (or agents) may use schemas with the same `$id`.
    ajv = new Ajv({ strict: false, allErrors: true, addUsedSchema: false, logger: false })
    addFormats(ajv)
    ajvs.set(draft, ajv)
  }
  return ajv
}

/** A JSON Schema's validator, by its `$schema` (draft-07 when it names none, or a draft Ajv has no class for). */
function jsonSchemaValidator(name: string, schema: object): ResolvedTool['validate'] {
  const declared = (schema as { $schema?: unknown }).$schema
  const draft = typeof declared !== 'string' ? 'draft-07' : declared.includes('2020-12') ? '2020-12' : declared.includes('2019-09') ? '2019-09' : 'draft-07'
  let compiled: AjvValidator
  const ajv = ajvFor(draft)
  try {
    // draft-04 and draft-06 read as draft-07 (nearly the same keywords), without a `$schema` Ajv does not know.
    const known = typeof declared !== 'string' || draft !== 'draft-07' || declared.includes('draft-07')
    compiled = ajv.compile(known ? schema : withoutKey(schema, '$schema'))
  } catch (error) {
    throw invalidSchema(name, (error as Error).message)
  }
  return async (input) => (compiled(input) ? { success: true, value: input } : { success: false, error: new Error(ajv.errorsText(compiled.errors)) })
}

function withoutKey(object: object, key: string): object {
  const { [key]: _omitted, ...rest } = object as Record<string, unknown>
  return rest
}

async function resolveSchema(name: string, given: unknown): Promise<Pick<ResolvedTool, 'jsonSchema' | 'validate'>> {
  // No schema: an object with no properties, as the AI SDK has it.
  const schema = given ?? { type: 'object', properties: {} }
  // An AI SDK `lazySchema()`: the AI SDK makes it.
  if (typeof schema === 'function') return resolveSchema(name, viaAiSdk(name, schema))
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
      validate: check ? async (input) => (await check(input)) as Validation : jsonSchemaValidator(name, jsonSchema),
    }
  }
  const looksLikeJsonSchema = ['type', 'properties', '$schema', 'anyOf', 'oneOf', 'allOf', '$ref', 'enum'].some((k) => k in schema)
  if (!looksLikeJsonSchema) throw invalidSchema(name, 'not a JSON Schema (no type, properties, $schema, anyOf, oneOf, allOf, $ref or enum)')
  try {
    JSON.stringify(schema)
  } catch (error) {
    throw invalidSchema(name, `not serialisable: ${(error as Error).message}`)
  }
  return { jsonSchema: schema, validate: jsonSchemaValidator(name, schema) }
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

/** An error with the AI SDK's name for it (`AI_InvalidToolInputError`, ...), as its `streamText` reports invalid calls. */
function named(name: string, message: string): Error {
  return Object.assign(new Error(message), { name })
}

/** An invalid call's error (the AI SDK's `InvalidToolInputError`), with why. */
function invalidInput(toolName: string, why: string): Error {
  return named('AI_InvalidToolInputError', `Invalid input for tool ${toolName}: ${why}`)
}

/**
 * The model's tool-call input parsed: JSON text (empty: `{}`, as the AI SDK
 * reads it); a model that sends a value rather than text is taken at its word.
 */
export function parseToolInput(toolName: string, input: unknown): Validation {
  if (typeof input !== 'string') return { success: true, value: input ?? {} }
  try {
    return { success: true, value: input.trim() === '' ? {} : JSON.parse(input) }
  } catch (error) {
    return { success: false, error: invalidInput(toolName, `JSON parsing failed: Text: ${input}.\nError message: ${(error as Error).message}`) }
  }
}

/**
 * A tool call's parsed input checked against its tool (the rest of the AI
 * SDK's `parseToolCall`): `value` is what `execute` and `needsApproval` get,
 * the schema's output (defaults filled in, transforms applied).
 */
export async function checkToolInput(tool: ResolvedTool | undefined, toolName: string, input: unknown, available: Iterable<string>): Promise<Validation> {
  if (!tool) {
    const names = [...available]
    const offered = names.length === 0 ? 'No tools are available.' : `Available tools: ${names.join(', ')}.`
    return { success: false, error: named('AI_NoSuchToolError', `Model tried to call unavailable tool '${toolName}'. ${offered}`) }
  }
  let checked: Validation
  try {
    checked = await tool.validate(input)
  } catch (error) {
    checked = { success: false, error: errorFrom(error) }
  }
  if (checked?.success) return checked
  // A schema's own validate may fail with anything (or reply in no shape at all).
  const why = errorInfo((checked as { error?: unknown } | undefined)?.error).message
  return { success: false, error: invalidInput(toolName, `Type validation failed: Value: ${JSON.stringify(input)}.\nError message: ${why}`) }
}

/** The tool callback's reply for the Rust loop: `{ output }` or `{ error }`. */
export type ToolReply = { output: JsonValue } | { error: { name: string; message: string } }

/**
 * Runs a call the model step found valid. Its input is checked again (the
 * same check), so `execute` gets the schema's output, also after a resume in
 * a process whose tool has changed since.
 */
export async function executeTool(tools: Map<string, ResolvedTool>, toolName: string, input: unknown, options: ToolExecutionOptions): Promise<unknown> {
  const tool = tools.get(toolName)
  const checked = await checkToolInput(tool, toolName, input, tools.keys())
  if (!checked.success) throw checked.error
  if (!tool!.execute) throw named('ToolExecutionError', `tool "${toolName}" has no execute function`)
  return tool!.execute(checked.value, options)
}

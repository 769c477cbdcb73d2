/**
 * The ES-module entry point (`import ... from 'durable-agent'`): the same
 * exports as `index.ts`, which `require` loads. Re-exported rather than built a
 * second time so that a process that both imports and requires the package
 * holds one copy of every class and of the state behind them (the native
 * handle of each cache, the internals of each CachingPubSub): a cache made by
 * CommonJS code works in a CachingPubSub made by ES-module code, and
 * `instanceof` holds across both.
 */
export * from './index.js'

import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.ts'],
    // Each file in its own process: native handles and Redis connections of one
    // file never leak into another.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})

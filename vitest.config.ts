import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Unit and integration tests: loopback and unprivileged ports only.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two files at a time at least: vitest's default (one fewer than the cores) is one on a 2-core machine such as
    // CI's, where most files wait on child processes, sockets and timers rather than the CPU (session 23: 183
    // files in 430 s with two against 703 s with one, all passing).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});

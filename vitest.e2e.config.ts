import { defineConfig } from 'vitest/config';

// End-to-end tests: real peers in network namespaces, QEMU. Needs root (see .ci/run).
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});

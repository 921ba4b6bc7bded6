import { defineConfig } from 'vitest/config';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  test: {
    include: ['client/test/**/*.test.ts', 'react/test/**/*.test.tsx'],
    environment: 'jsdom',
    globals: true,
    restoreMocks: true,
  },
});

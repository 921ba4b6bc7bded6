import { defineConfig } from 'vitest/config';
import { sourceAliases } from './source-aliases';

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  resolve: { alias: sourceAliases },
  test: {
    include: ['client/test/**/*.test.ts', 'react/test/**/*.test.tsx'],
    environment: 'jsdom',
    globals: true,
    restoreMocks: true,
  },
});

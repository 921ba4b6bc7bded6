import { defineConfig } from 'vite';
import { sourceAliases } from '../source-aliases';

// Plain esbuild JSX (no React plugin needed). Output: web/demo/dist (served by the gateway via
// HERALD_STATIC_DIR). base './' so the page works from any path. The packages resolve to their
// sources (../source-aliases.ts); the built packages are tested by web/consumer/run.sh.
export default defineConfig({
  root: __dirname,
  base: './',
  esbuild: { jsx: 'automatic' },
  resolve: { alias: sourceAliases },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  server: { port: 5173, host: '127.0.0.1' },
});

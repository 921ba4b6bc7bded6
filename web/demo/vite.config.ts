import { defineConfig } from 'vite';

// Plain esbuild JSX (no React plugin needed). Output: web/demo/dist (served by the gateway via
// HERALD_STATIC_DIR). base './' so the page works from any path.
export default defineConfig({
  root: __dirname,
  base: './',
  esbuild: { jsx: 'automatic' },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  server: { port: 5173, host: '127.0.0.1' },
});

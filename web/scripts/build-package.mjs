// Builds one publishable package (run from its directory, e.g. `npm run build -w herald-notify-client`):
//   src/index.ts --esbuild--> dist/index.js (+ .map): one ES2022 ES module, every bare import
//     (react, react/jsx-runtime, herald-notify-client) left external;
//   src/**/*.ts  --tsc------> dist/**/*.d.ts (tsconfig.build.json), with relative specifiers
//     rewritten to `./x.js` so the declarations also resolve under `moduleResolution: node16`;
//   --use-client prepends the "use client" directive (React Server Components frameworks);
//   --css <file> copies a stylesheet to dist/.
// Sources are untouched; the workspace's demo, tsc and vitest keep using them (aliases).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const useClient = args.includes('--use-client');
const cssAt = args.indexOf('--css');
const css = cssAt >= 0 ? args[cssAt + 1] : null;
const pkgDir = process.cwd();
const dist = join(pkgDir, 'dist');
const tsc = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'typescript', 'bin', 'tsc');

rmSync(dist, { recursive: true, force: true });
await build({
  entryPoints: [join(pkgDir, 'src', 'index.ts')],
  outfile: join(dist, 'index.js'),
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  packages: 'external',
  tsconfig: join(pkgDir, 'tsconfig.build.json'), // not ../tsconfig.json, whose `paths` point at the sources
  jsx: 'automatic',
  sourcemap: true,
  legalComments: 'none',
  banner: useClient ? { js: '"use client";' } : undefined,
  logLevel: 'warning',
});

execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: pkgDir, stdio: 'inherit' });

// Relative specifiers in the emitted declarations: './client' -> './client.js', './generated' -> './generated/index.js'.
const walk = (d) => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
for (const file of walk(dist).filter((f) => f.endsWith('.d.ts'))) {
  const src = readFileSync(file, 'utf8');
  const out = src.replace(/(\bfrom\s*|\bimport\s*\(\s*)(['"])(\.{1,2}\/[^'"]*?)\2/g, (m, pre, q, spec) => {
    if (/\.(js|mjs|cjs|json|css)$/.test(spec)) return m;
    const abs = resolve(dirname(file), spec);
    if (existsSync(`${abs}.d.ts`)) return `${pre}${q}${spec}.js${q}`;
    if (existsSync(join(abs, 'index.d.ts'))) return `${pre}${q}${spec}/index.js${q}`;
    throw new Error(`${file}: cannot resolve declaration import ${spec}`);
  });
  if (out !== src) writeFileSync(file, out);
}

// The packages were once called @herald/client and @herald/react (a scope nobody here owns);
// a leftover import of those names would send consumers to whoever claims the scope.
for (const file of walk(dist).filter((f) => /\.(js|d\.ts)$/.test(f))) {
  if (/['"]@herald\//.test(readFileSync(file, 'utf8')))
    throw new Error(`${file} imports an @herald/* package: use herald-notify-client / herald-notify-react`);
}

if (css) copyFileSync(join(pkgDir, css), join(dist, basename(css)));
console.log(`built ${basename(pkgDir)} -> dist/`);

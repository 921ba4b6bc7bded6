// Each package's size as an app would ship it: its entry bundled and minified with esbuild (react,
// react-dom and — for the React package alone — the client package left out), then gzip -9.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const react = ['react', 'react-dom', 'react/jsx-runtime'];
async function measure(label, contents, external) {
  const r = await build({
    stdin: { contents, resolveDir: process.cwd(), loader: 'js' },
    bundle: true, minify: true, format: 'esm', target: 'es2022', write: false, external, logLevel: 'error',
  });
  const code = r.outputFiles[0].contents;
  return { label, min: code.length, gz: gzipSync(code, { level: 9 }).length };
}
async function measureCss(label, file) {
  const r = await build({ entryPoints: [file], bundle: true, minify: true, write: false, loader: { '.css': 'css' }, logLevel: 'error' });
  const code = r.outputFiles[0].contents;
  return { label, min: code.length, gz: gzipSync(code, { level: 9 }).length };
}
const rows = [
  await measure('herald-notify-client', "export * from 'herald-notify-client';", react),
  await measure('herald-notify-react (client external)', "export * from 'herald-notify-react';", [...react, 'herald-notify-client']),
  await measure('herald-notify-react + client', "export * from 'herald-notify-react';", react),
  await measureCss('herald-notify-react/styles.css', require.resolve('herald-notify-react/styles.css')),
];
const kb = (n) => `${(n / 1024).toFixed(1)} kB`;
for (const r of rows) console.log(`size: ${r.label.padEnd(40)} min ${kb(r.min).padStart(9)}   min+gzip ${kb(r.gz).padStart(8)}`);

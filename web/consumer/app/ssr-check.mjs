// Server-side rendering safety of the installed packages, in plain Node (no DOM): importing them
// touches no `window`/`document`, the React bundle starts with "use client", and the bell and
// toaster render to HTML.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';

const trap = (name) => ({ configurable: true, get() { throw new Error(`${name} accessed at import`); } });
Object.defineProperty(globalThis, 'window', trap('window'));
Object.defineProperty(globalThis, 'document', trap('document'));
const client = await import('herald-notify-client');
const react = await import('herald-notify-react');
delete globalThis.window;
delete globalThis.document;
assert.equal(typeof window, 'undefined');

const require = createRequire(import.meta.url);
const reactEntry = require.resolve('herald-notify-react');
assert.match(readFileSync(reactEntry, 'utf8'), /^"use client";/, 'herald-notify-react starts with "use client"');
assert.ok(!/^"use client"/.test(readFileSync(require.resolve('herald-notify-client'), 'utf8')), 'the client package is not a client-only module');

class NoSocket {
  readyState = 0;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  send() {}
  close() {}
}
const c = new client.HeraldClient({ url: 'wss://x.test/v1/ws', getToken: async () => 't', WebSocket: NoSocket });
const html = renderToString(createElement(react.HeraldProvider, { client: c }, createElement(react.NotificationBell), createElement(react.Toaster)));
assert.match(html, /data-testid="herald-bell"/);
assert.match(html, /hn-toaster/);

// ESM-only: no CommonJS build. Whether require() works is up to Node (require(esm): 20.19+/22.12+).
let viaRequire;
try {
  viaRequire = typeof require('herald-notify-client').HeraldClient === 'function' ? 'works' : 'no HeraldClient';
} catch (e) {
  viaRequire = `fails (${e.code || e.message})`;
}
console.log(`ssr: import touches no window/document, renderToString OK (${html.length} chars); require() on Node ${process.version}: ${viaRequire}`);

// The consumer app built by run.sh (CONSUMER_DIST) in Chromium against real gateway nodes
// (web/e2e/cluster.mjs, with the app as the nodes' static dir): the bell renders with the
// package's stylesheet, connects, and a notification published through the HTTP API
// (`POST /v1/notifications` with a service key) shows up as badge, toast and panel row.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { startCluster, ROOT } from '../e2e/cluster.mjs';

const DIST = process.env.CONSUMER_DIST;
const ARTIFACTS = join(ROOT, 'test-artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 15_000;
const LABEL = process.env.CONSUMER_LABEL || 'app';

let cluster;
let browser;

before(async () => {
  assert.ok(DIST, 'CONSUMER_DIST (the consumer app build) is required; run web/consumer/run.sh');
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await startCluster({ staticDir: DIST });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await cluster?.stop();
});

test(`the packed packages render a live bell in a fresh Vite + React app (${LABEL})`, async () => {
  const user = `consumer-${randomBytes(4).toString('hex')}`;
  const node = cluster.nodeUrls['node-a'];
  const ctx = await browser.newContext({ viewport: { width: 900, height: 600 } });
  ctx.setDefaultTimeout(WAIT);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${node}/?user=${user}`, { waitUntil: 'domcontentloaded' });
    await page.locator('[data-testid="herald-bell"]').waitFor({ state: 'visible' });
    // Connected (the bell's own connection state), and the exported stylesheet is applied.
    await page.locator('.hn-bell[data-state="open"]').waitFor();
    const styled = await page.evaluate(() =>
      [...document.styleSheets].some((s) => [...s.cssRules].some((r) => (r.selectorText || '').includes('.hn-bell'))),
    );
    assert.ok(styled, 'herald-notify-react/styles.css is in the page');

    const title = `From the consumer test ${randomBytes(3).toString('hex')}`;
    const res = await fetch(`${node}/v1/notifications`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${cluster.serviceKey}` },
      body: JSON.stringify({ recipient: user, type: 'comment.created', title, body: 'Installed from the tarballs' }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(res.status, 201, `publish: HTTP ${res.status} ${await res.text()}`);

    await page.locator('[data-testid="herald-badge"]', { hasText: '1' }).waitFor();
    await page.locator('[data-testid="herald-toast"]', { hasText: title }).waitFor();
    await page.locator('[data-testid="herald-bell"]').click();
    await page.locator('[data-testid="herald-item"]', { hasText: title }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, `consumer-bell-${LABEL}.png`), animations: 'disabled' });
    assert.deepEqual(errors, []);
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, `consumer-bell-${LABEL}-failure.png`) }).catch(() => {});
    console.error('[consumer] node-a log tail:\n' + cluster.logTail('node-a'));
    throw e;
  } finally {
    await ctx.close();
  }
});

// The consumer app built by run.sh (CONSUMER_DIST) in Chromium against real gateway nodes
// (web/e2e/cluster.mjs, with the app as the nodes' static dir): the bell renders with the
// package's stylesheet, connects, and a notification published through the HTTP API
// (`POST /v1/notifications` with a service key) shows up as badge, toast and panel row. Then the
// public API as another team configures it (the app's `?variant=` pages): German `labels` and
// `locale` (Intl times), `placement` (bottom-end vs bottom-start, measured against the bell),
// `onNavigate` (a plain click on a linked row routes without a page load), `renderBell`,
// `renderEmpty`, `renderItem`, and a controlled `open` with `onOpenChange`.
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

// ----------------------------------------------------------------- the public API, configured
// The app's `?variant=` pages (app/src/main.tsx) configure the bell as another team would.

async function withPage(name, fn) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  ctx.setDefaultTimeout(WAIT);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await fn(page);
    assert.deepEqual(errors, []);
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, `consumer-${name}-${LABEL}-failure.png`) }).catch(() => {});
    throw e;
  } finally {
    await ctx.close();
  }
}

async function publish(user, fields) {
  const res = await fetch(`${cluster.nodeUrls['node-a']}/v1/notifications`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${cluster.serviceKey}` },
    body: JSON.stringify({ recipient: user, type: 'comment.created', body: '', ...fields }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  assert.equal(res.status, 201, `publish: HTTP ${res.status} ${text}`);
  return JSON.parse(text).notifications[0].id;
}

const box = (page, sel) => page.locator(sel).boundingBox();

test(`labels + locale (German words, Intl times), placement, and onNavigate routing (${LABEL})`, async () => {
  const user = `consumer-de-${randomBytes(4).toString('hex')}`;
  const node = cluster.nodeUrls['node-a'];
  await publish(user, { title: 'Bestellung versandt', link: '/orders/42' });

  // Default placement (bottom-end) first: the panel's end (right) edge lines up with the bell's.
  await withPage('placement-end', async (page) => {
    await page.goto(`${node}/?user=${user}`, { waitUntil: 'domcontentloaded' });
    await page.locator('.hn-bell[data-state="open"]').waitFor();
    await page.locator('[data-testid="herald-bell"]').click();
    await page.locator('[data-testid="herald-item"]').first().waitFor({ state: 'visible' });
    const b = await box(page, '[data-testid="herald-bell"]');
    const p = await box(page, '[data-testid="herald-panel"]');
    assert.ok(Math.abs(p.x + p.width - (b.x + b.width)) <= 2, `bottom-end: panel right ${p.x + p.width} vs bell right ${b.x + b.width}`);
    assert.ok(p.x < b.x - 50, `bottom-end: the panel extends to the bell's left (${p.x} vs ${b.x})`);
    assert.ok(p.y >= b.y + b.height - 1, 'below the bell');
  });

  await withPage('de', async (page) => {
    await page.goto(`${node}/?user=${user}&variant=de`, { waitUntil: 'domcontentloaded' });
    await page.locator('.hn-bell[data-state="open"]').waitFor();
    // The bell's accessible name comes from `labels.bell`.
    await page.waitForFunction(() => document.querySelector('[data-testid="herald-bell"] > .hn-sr')?.textContent === 'Benachrichtigungen (1 ungelesen)');
    await page.locator('[data-testid="herald-bell"]').click();
    const panel = page.locator('[data-testid="herald-panel"]');
    await panel.waitFor({ state: 'visible' });
    assert.equal((await page.locator('[data-testid="herald-panel-title"]').textContent()).trim(), 'Benachrichtigungen');
    await panel.getByText('Alle als gelesen markieren').waitFor();
    // placement="bottom-start": the panel's start (left) edge lines up with the bell's, and it
    // extends to the right.
    const b = await box(page, '[data-testid="herald-bell"]');
    const p = await box(page, '[data-testid="herald-panel"]');
    assert.ok(Math.abs(p.x - b.x) <= 2, `bottom-start: panel left ${p.x} vs bell left ${b.x}`);
    assert.ok(p.x + p.width > b.x + b.width + 50, 'bottom-start: the panel extends to the bell\'s right');
    // The time, through Intl in German (what RelativeTimeFormat('de') says for "now"), not "just now".
    const row = page.locator('[data-testid="herald-item"]').first();
    const time = (await row.locator('.hn-item__time').textContent()).trim();
    const expected = await page.evaluate(() => new Intl.RelativeTimeFormat('de', { numeric: 'auto', style: 'short' }).format(0, 'second'));
    assert.equal(time, expected, `German relative time: ${time}`);
    assert.notEqual(time, 'just now');
    await page.screenshot({ path: join(ARTIFACTS, `consumer-de-${LABEL}.png`), animations: 'disabled' });

    // Router integration: a plain click on a linked row goes to onNavigate, with no page load.
    await page.evaluate(() => (window.__noReload = true));
    await row.click();
    await page.locator('[data-testid="route"]', { hasText: '/orders/42' }).waitFor();
    const after = await page.evaluate(() => ({ nav: window.__consumer.navigated, same: window.__noReload === true, path: location.pathname }));
    assert.deepEqual(after.nav, ['/orders/42']);
    assert.equal(after.same, true, 'the page did not reload');
    assert.equal(after.path, '/orders/42');
  });
});

test(`renderBell, renderEmpty, renderItem, and a controlled open with onOpenChange (${LABEL})`, async () => {
  const user = `consumer-custom-${randomBytes(4).toString('hex')}`;
  const node = cluster.nodeUrls['node-a'];
  await withPage('custom', async (page) => {
    await page.goto(`${node}/?user=${user}&variant=custom`, { waitUntil: 'domcontentloaded' });
    const bell = page.locator('[data-testid="herald-bell"]');
    // renderBell: the app's content inside the bell button (no default icon or badge).
    await page.locator('[data-testid="custom-bell"]', { hasText: 'Inbox 0 shut' }).waitFor();
    await page.locator('.hn-bell[data-state="open"]').waitFor();
    assert.equal(await page.locator('[data-testid="herald-bell"] [data-testid="custom-bell"]').count(), 1);
    assert.equal(await page.locator('[data-testid="herald-badge"]').count(), 0);

    // Controlled: the app's own button opens the panel (the bell follows the prop)...
    await page.locator('[data-testid="app-toggle"]').click();
    await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'visible' });
    await page.locator('[data-testid="custom-bell"]', { hasText: 'open' }).waitFor();
    // renderEmpty: the app's empty state once the (empty) list has loaded.
    await page.locator('[data-testid="custom-empty"]', { hasText: 'Inbox zero' }).waitFor({ state: 'visible' });

    // renderItem: a live notification is drawn by the app, with its unread flag and time.
    await publish(user, { type: 'task.assigned', title: 'Rendered by the app' });
    const item = page.locator('[data-testid="custom-item"]', { hasText: 'Rendered by the app' });
    await item.waitFor({ state: 'visible' });
    assert.match(await item.textContent(), /^\[task\.assigned\] Rendered by the app · just now$/);
    assert.equal(await item.getAttribute('data-unread'), 'true');
    await page.locator('[data-testid="custom-bell"]', { hasText: 'Inbox 1 open' }).waitFor();
    assert.equal(await page.locator('[data-testid="custom-empty"]').count(), 0);

    // ...and the bell asks through onOpenChange: clicking it reports `false` and closes (the app agrees).
    await bell.click();
    await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
    // With the app vetoing, the bell's click is only a request: onOpenChange(true), panel stays shut.
    await page.locator('[data-testid="app-veto"]').check();
    await page.evaluate(() => (window.__consumer.openChanges.length = 0));
    await bell.click();
    await page.waitForFunction(() => window.__consumer.openChanges.includes(true));
    await page.waitForTimeout(300); // a render that would wrongly open the panel has happened by now
    assert.equal(await page.locator('[data-testid="herald-panel"]').count(), 0, 'a controlled bell stays shut when the app says no');
    assert.equal(await bell.getAttribute('aria-expanded'), 'false');
    await page.screenshot({ path: join(ARTIFACTS, `consumer-custom-${LABEL}.png`), animations: 'disabled' });
  });
});

test(`NotificationPreferences renders from the tarball, localised, and saves (${LABEL})`, async () => {
  const user = `consumer-prefs-${randomBytes(4).toString('hex')}`;
  await withPage('prefs', async (page) => {
    await page.goto(`${cluster.nodeUrls['node-a']}/?user=${user}&variant=prefs`, { waitUntil: 'domcontentloaded' });
    const main = page.locator('main [data-testid="herald-prefs"]');
    await main.locator('[data-testid="herald-prefs-form"]').waitFor({ state: 'visible' });
    assert.equal((await main.locator('h2').textContent()).trim(), 'Benachrichtigungseinstellungen');
    // This cluster has no fallback rules: the form says so, and still offers quiet hours.
    await main.locator('[data-testid="herald-prefs-no-types"]').waitFor();
    await main.locator('[data-testid="herald-prefs-quiet"]').check();
    await main.locator('[data-testid="herald-prefs-tz"]').selectOption('UTC');
    await main.getByRole('button', { name: 'Speichern' }).click();
    await main.locator('[data-testid="herald-prefs-status"]', { hasText: 'Gespeichert.' }).waitFor();
    assert.equal(await page.evaluate(() => window.__consumer.saved), 1);
    // The bell's settings view shows what was stored.
    await page.locator('[data-testid="herald-bell"]').click();
    await page.locator('[data-testid="herald-settings"]').click();
    const inPanel = page.locator('[data-testid="herald-panel"] [data-testid="herald-prefs-form"]');
    await inPanel.waitFor({ state: 'visible' });
    assert.equal(await inPanel.locator('[data-testid="herald-prefs-quiet"]').isChecked(), true);
    assert.equal(await inPanel.locator('[data-testid="herald-prefs-tz"]').inputValue(), 'UTC');
  });
});

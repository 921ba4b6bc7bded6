// Browser end-to-end tests: real Chromium (Debian's, via playwright-core) against a private
// two-node Herald cluster behind HAProxy with real PostgreSQL and Redis (see cluster.mjs).
// Run: node --test e2e.test.mjs   (scripts/web-test.sh does it after building web/demo).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createECDH, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { startCluster, ROOT } from './cluster.mjs';

const ARTIFACTS = join(ROOT, 'test-artifacts');
const AXE_PATH = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 15_000; // upper bound for any single wait
const run = randomBytes(3).toString('hex');

// A P-256 private key for VAPID (base64url of the raw scalar), made per run.
const VAPID_PRIVATE = (() => {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const k = ecdh.getPrivateKey();
  return Buffer.concat([Buffer.alloc(32 - k.length), k]).toString('base64url');
})();

let cluster;
let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Web Push on (test 19): a VAPID key pair, so the subscription API answers. Fallback rules,
  // so the preferences view has types to offer (tests 20-22): the webhook goes to a loopback
  // port nobody listens on, an hour after an unread notification: never during a run.
  cluster = await startCluster({
    env: {
      HERALD_VAPID_PRIVATE_KEY: VAPID_PRIVATE,
      HERALD_VAPID_SUBJECT: 'mailto:e2e@herald.test',
      HERALD_FALLBACK_TYPES: 'comment.created:webhook:1h, task.assigned:webhook:1h, *:webhook:1h',
      HERALD_FALLBACK_WEBHOOK_URL: 'http://127.0.0.1:9/herald-e2e-unused',
      HERALD_FALLBACK_WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
    },
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await cluster?.stop();
});

// ------------------------------------------------------------------------- helpers

async function newContext() {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1 });
  ctx.setDefaultTimeout(WAIT);
  // Count every toast that is ever rendered in each page (by notification id).
  await ctx.addInitScript(() => {
    window.__toasts = [];
    new MutationObserver((muts) => {
      for (const m of muts)
        for (const n of m.addedNodes)
          if (n.nodeType === 1) {
            const els = n.matches?.('[data-testid="herald-toast"]') ? [n] : [...n.querySelectorAll('[data-testid="herald-toast"]')];
            for (const el of els) window.__toasts.push(el.getAttribute('data-id'));
          }
    }).observe(document, { childList: true, subtree: true });
  });
  return ctx;
}

/**
 * Open the demo as `user`; `pin` = node name to pin WS + API to, or null for the load balancer.
 * `query`: more demo parameters (e.g. `toastMs`); `init`: a script run in this page before the demo's.
 */
async function openDemo(ctx, user, pin = null, { query = {}, init = null } = {}) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[page ${user}] error:`, e.message));
  if (init) await page.addInitScript(init);
  const q = new URLSearchParams({ user, ...query });
  if (pin) {
    const base = cluster.nodeUrls[pin];
    q.set('ws', `${base.replace('http:', 'ws:')}/v1/ws`);
    q.set('api', base);
  }
  await page.goto(`${cluster.lbUrl}/?${q}`, { waitUntil: 'domcontentloaded' });
  await waitOpen(page, pin);
  return page;
}

async function waitOpen(page, node = null) {
  await page.waitForFunction(
    (node) => document.body.dataset.state === 'open' && !!document.body.dataset.nodeId && (!node || document.body.dataset.nodeId === node),
    node,
    { timeout: WAIT },
  );
}

const nodeOf = (page) => page.evaluate(() => document.body.dataset.nodeId);
const badge = async (page) => {
  const el = page.locator('[data-testid="herald-badge"]');
  return (await el.count()) ? (await el.textContent()).trim() : '0';
};
// The bell's accessible name (from its own text since the a11y pass, not an aria-label).
const ariaLabel = (page) => page.locator('[data-testid="herald-bell"] > .hn-sr').textContent();
const toastsFor = (page, id) => page.evaluate((id) => window.__toasts.filter((t) => t === id).length, id);
const clientIds = (page) => page.evaluate(() => window.__herald.notifications.map((n) => n.id));

async function waitBadge(page, expected) {
  await page.waitForFunction(
    (exp) => {
      const el = document.querySelector('[data-testid="herald-badge"]');
      return (el ? el.textContent.trim() : '0') === exp;
    },
    String(expected),
    { timeout: WAIT },
  );
}

async function waitHolds(page, id) {
  await page.waitForFunction((id) => window.__herald?.notifications.some((n) => n.id === id), id, { timeout: WAIT });
}

async function openBell(page) {
  if (!(await page.locator('[data-testid="herald-panel"]').count())) await page.locator('[data-testid="herald-bell"]').click();
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'visible' });
}

function note(type, title, body, link) {
  return { type, title, body, link };
}

// ------------------------------------------------------------------------- scenarios

const userA = `alice-${run}`;
let ctxA;
let tab1; // pinned to node-a
let tab2; // pinned to node-b
let published = [];

test('1. two tabs on different nodes: notification shows in both, badge right, exactly one toast per user', async () => {
  ctxA = await newContext();
  tab1 = await openDemo(ctxA, userA, 'node-a');
  tab2 = await openDemo(ctxA, userA, 'node-b');
  assert.equal(await nodeOf(tab1), 'node-a');
  assert.equal(await nodeOf(tab2), 'node-b');
  assert.equal(await badge(tab1), '0');

  const samples = [
    note('comment.created', 'Bob commented on your post', 'Looks great! Ship it 🚀', '/posts/7#comment-3'),
    note('task.assigned', 'New task: Update billing docs', 'Assigned to you by Dana · due Friday', '/tasks/88'),
    note('order.shipped', 'Order #1042 has shipped', 'Arriving Thursday via UPS.', '/orders/1042'),
  ];
  // Published through node-b (tab1 is on node-a, so its copy crosses the Redis bus).
  for (const s of samples) {
    const r = await cluster.publish(cluster.nodeUrls['node-b'], { recipient: userA, ...s });
    published.push(r.notifications[0].id);
  }
  for (const id of published) {
    await waitHolds(tab1, id);
    await waitHolds(tab2, id);
  }
  await waitBadge(tab1, 3);
  await waitBadge(tab2, 3);
  assert.equal(await ariaLabel(tab1), 'Notifications (3 unread)');
  assert.equal(await ariaLabel(tab2), 'Notifications (3 unread)');

  // Let the cross-tab claim settle, then: each notification toasted exactly once across the tabs.
  await tab1.waitForTimeout(1000);
  for (const id of published) {
    const n = (await toastsFor(tab1, id)) + (await toastsFor(tab2, id));
    assert.equal(n, 1, `notification ${id} toasted ${n} times across the two tabs`);
  }
  // Screenshot of a toast (scenario 5) from whichever tab showed the newest one.
  const last = published[published.length - 1];
  const shower = (await toastsFor(tab1, last)) ? tab1 : tab2;
  await shower.locator(`[data-testid="herald-toast"][data-id="${last}"]`).waitFor({ state: 'visible' });
  await shower.bringToFront();
  await shower.screenshot({ path: join(ARTIFACTS, 'toast.png'), animations: 'disabled' });
  // Items are newest first (seq desc).
  const ids = await clientIds(tab2);
  assert.deepEqual(ids.slice(0, 3), [...published].reverse());
});

test('2. mark one read in one tab: the other tab updates badge and item styling without reload', async () => {
  assert.ok(tab1 && tab2, 'scenario 1 must have run');
  const target = published[0];
  await openBell(tab1);
  const item1 = tab1.locator(`[data-testid="herald-item"][data-id="${target}"]`);
  assert.equal(await item1.getAttribute('data-unread'), 'true');
  await item1.click(); // marks read (and navigates in-app to its link)
  await waitBadge(tab1, 2);

  await openBell(tab2);
  const item2 = tab2.locator(`[data-testid="herald-item"][data-id="${target}"]`);
  await tab2.waitForFunction(
    (id) => document.querySelector(`[data-testid="herald-item"][data-id="${id}"]`)?.getAttribute('data-unread') === 'false',
    target,
    { timeout: WAIT },
  );
  await waitBadge(tab2, 2);
  assert.equal(await ariaLabel(tab2), 'Notifications (2 unread)');
  // Styling: the read item lost the unread class (bold + blue dot); the others keep it.
  assert.ok(!(await item2.getAttribute('class')).includes('is-unread'));
  assert.equal(await item2.locator('.hn-item__dot').count(), 0);
  const other = tab2.locator(`[data-testid="herald-item"][data-id="${published[1]}"]`);
  assert.ok((await other.getAttribute('class')).includes('is-unread'));
  await tab2.bringToFront();
  await tab2.mouse.move(0, 0);
  await tab2.screenshot({ path: join(ARTIFACTS, 'bell-open.png'), animations: 'disabled' });

  // Escape closes the dropdown.
  await tab2.keyboard.press('Escape');
  await tab2.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
  await ctxA.close();
});

test('3. killing the node a tab is on: it reconnects through the load balancer and gets the outage notification once', async () => {
  const user = `carol-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  const before = await page.evaluate(() => window.__herald.lastSeq);
  const first = await nodeOf(page);
  const survivor = first === 'node-a' ? 'node-b' : 'node-a';
  // One notification before the outage, so the resume path (last_seq) is exercised.
  const pre = await cluster.publish(cluster.lbUrl, { recipient: user, type: 'system.alert', title: 'Before the outage', body: '' });
  await waitHolds(page, pre.notifications[0].id);

  await cluster.killNode(first); // SIGKILL: no drain, the socket just dies
  const during = await cluster.publish(cluster.nodeUrls[survivor], {
    recipient: user,
    type: 'mention.created',
    title: 'Published during the outage',
    body: `node ${first} was down`,
  });
  const id = during.notifications[0].id;

  await waitOpen(page, survivor);
  await waitHolds(page, id);
  await waitBadge(page, 2);
  await page.waitForTimeout(500);
  const ids = await clientIds(page);
  assert.equal(ids.filter((x) => x === id).length, 1, 'outage notification held exactly once');
  await openBell(page);
  assert.equal(await page.locator(`[data-testid="herald-item"][data-id="${id}"]`).count(), 1, 'rendered exactly once');
  assert.equal(await page.locator('[data-testid="herald-item"]').count(), 2);
  assert.ok((await page.evaluate(() => window.__herald.lastSeq)) > before);
  await ctx.close();

  await cluster.startNode(first); // back to two nodes for the rest
});

test('4. a user who was offline sees everything published meanwhile on opening the page', async () => {
  const user = `dave-${run}`;
  const count = 25; // more than one HTTP page (20)
  const ids = [];
  for (let i = 1; i <= count; i++) {
    const r = await cluster.publish(cluster.lbUrl, {
      recipient: user,
      type: i % 2 ? 'payment.processed' : 'comment.created',
      title: `Offline notification ${i}`,
      body: `number ${i} of ${count}`,
    });
    ids.push(r.notifications[0].id);
  }
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await page.waitForFunction((n) => window.__herald.notifications.length >= n, count, { timeout: WAIT });
  await waitBadge(page, count);
  const held = await clientIds(page);
  assert.equal(held.length, count);
  assert.deepEqual(new Set(held), new Set(ids));
  const seqs = await page.evaluate(() => window.__herald.notifications.map((n) => n.seq));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'ordered by seq desc');
  await openBell(page);
  assert.equal(await page.locator('[data-testid="herald-item"]').count(), count);
  // Catch-up on first load does not spam toasts.
  assert.equal(await page.evaluate(() => window.__toasts.length), 0);
  await ctx.close();
});

test('5. screenshots saved under test-artifacts/', async () => {
  const { statSync } = await import('node:fs');
  for (const f of ['toast.png', 'bell-open.png']) {
    const s = statSync(join(ARTIFACTS, f));
    assert.ok(s.size > 5000, `${f} looks empty`);
  }
});

test('6. mark all read while offline: rolled back, reported, and still right after reconnecting', async () => {
  const user = `erin-${run}`;
  const ids = [];
  for (let i = 1; i <= 3; i++) {
    const r = await cluster.publish(cluster.lbUrl, { recipient: user, type: 'task.assigned', title: `Offline read ${i}`, body: '' });
    ids.push(r.notifications[0].id);
  }
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await waitBadge(page, 3);
  await openBell(page);
  await ctx.setOffline(true);
  await page.waitForFunction(() => document.body.dataset.state === 'offline', null, { timeout: WAIT });
  await page.getByRole('button', { name: 'Mark all as read' }).first().click();
  const alert = page.locator('[data-testid="herald-action-error"]');
  await alert.waitFor({ state: 'visible' });
  assert.match(await alert.textContent(), /Couldn’t mark all as read/);
  await waitBadge(page, 3);
  for (const id of ids)
    assert.equal(await page.locator(`[data-testid="herald-item"][data-id="${id}"]`).getAttribute('data-unread'), 'true');
  assert.equal(await page.evaluate(() => window.__herald.notifications.filter((n) => !n.read_at).length), 3);

  await ctx.setOffline(false);
  await waitOpen(page);
  await page.waitForTimeout(500);
  await waitBadge(page, 3);
  assert.equal(await page.evaluate(() => window.__herald.unreadCount), 3);
  // And the server agrees: nothing was marked.
  const server = await page.evaluate(async () => {
    await window.__herald.refreshUnreadCount();
    return window.__herald.unreadCount;
  });
  assert.equal(server, 3);
  await ctx.close();
});

test('7. a node that is down: the panel shows the reason and Retry, never an empty inbox', async () => {
  const user = `frank-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, 'node-b');
  await openBell(page);
  await page.locator('[data-testid="herald-empty"]').waitFor({ state: 'visible' }); // live and truly empty
  await cluster.killNode('node-b');
  const error = page.locator('[data-testid="herald-error"]');
  await error.waitFor({ state: 'visible' });
  // The demo fetches its token from the same node, so either step may be the one that fails;
  // either way the reason is shown.
  assert.match(await error.textContent(), /(Can’t reach the notification server|Couldn’t get a sign-in token)/);
  assert.match(await error.textContent(), /(Failed to fetch|could not connect)/);
  assert.equal(await page.locator('[data-testid="herald-retry"]').count(), 1);
  assert.equal(await page.locator('[data-testid="herald-empty"]').count(), 0, 'no empty state while not live');
  assert.equal(await page.getByText('No notifications yet').count(), 0);
  await page.screenshot({ path: join(ARTIFACTS, 'bell-error.png'), animations: 'disabled' });

  await cluster.startNode('node-b');
  // The client's own backoff may get there first; Retry skips the wait when it is still shown.
  await page
    .locator('[data-testid="herald-retry"]')
    .click({ timeout: 2000 })
    .catch(() => undefined);
  await waitOpen(page, 'node-b');
  await page.locator('[data-testid="herald-empty"]').waitFor({ state: 'visible' });
  assert.equal(await error.count(), 0);
  await ctx.close();
});

test('7b. a refused token (4001) shows why, and Retry connects again', async () => {
  const user = `frank2-${run}`;
  const ctx = await newContext();
  let refused = 0;
  await ctx.routeWebSocket(/\/v1\/ws/, (ws) => {
    if (refused === 0) {
      // The first socket: answer its auth as a gateway refusing the token would.
      ws.onMessage(() => {
        refused += 1;
        ws.close({ code: 4001, reason: 'unauthorized: bad signature' });
      });
    } else {
      ws.connectToServer();
    }
  });
  const page = await ctx.newPage();
  await page.goto(`${cluster.lbUrl}/?${new URLSearchParams({ user })}`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: WAIT });
  await openBell(page);
  const error = page.locator('[data-testid="herald-error"]');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /The server refused your sign-in \(unauthorized\)/);
  assert.match(await error.textContent(), /bad signature/);
  assert.equal(await page.getByText('No notifications yet').count(), 0);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'error', 'a terminal close waits for Retry');
  await page.locator('[data-testid="herald-retry"]').click();
  await waitOpen(page);
  await page.locator('[data-testid="herald-empty"]').waitFor({ state: 'visible' });
  assert.equal(refused, 1);
  await ctx.close();
});

test('8. toasts: none while the panel is open; clicking one marks it read', async () => {
  const user = `grace-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await openBell(page);
  const a = await cluster.publish(cluster.lbUrl, { recipient: user, type: 'comment.created', title: 'While the panel is open', body: '' });
  const idA = a.notifications[0].id;
  await page.locator(`[data-testid="herald-item"][data-id="${idA}"]`).waitFor({ state: 'visible' });
  await page.waitForTimeout(1000); // past the cross-tab claim window
  assert.equal(await toastsFor(page, idA), 0, 'no toast for what the open panel shows');

  await page.keyboard.press('Escape');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
  const b = await cluster.publish(cluster.lbUrl, { recipient: user, type: 'order.shipped', title: 'After closing the panel', body: '' });
  const idB = b.notifications[0].id;
  const toast = page.locator(`[data-testid="herald-toast"][data-id="${idB}"]`);
  await toast.waitFor({ state: 'visible' });
  await waitBadge(page, 2);
  await toast.click();
  await waitBadge(page, 1);
  assert.equal(await page.evaluate((id) => !!window.__herald.notifications.find((n) => n.id === id).read_at, idB), true);
  await ctx.close();
});

test('9. focus: activating an item returns focus to the bell; tabbing out closes the panel', async () => {
  const user = `heidi-${run}`;
  await cluster.publish(cluster.lbUrl, { recipient: user, type: 'task.assigned', title: 'Focus check', body: '', link: '/tasks/9' });
  await cluster.publish(cluster.lbUrl, { recipient: user, type: 'comment.created', title: 'Second', body: '', link: '/posts/1' });
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await waitBadge(page, 2);
  const active = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') || document.activeElement?.tagName);
  await page.locator('[data-testid="herald-bell"]').focus();
  await page.keyboard.press('ArrowDown');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'visible' });
  assert.equal(await active(), 'herald-item');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="nav-banner"]').waitFor({ state: 'visible' });
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
  assert.equal(await active(), 'herald-bell', 'focus back on the bell, not <body>');

  await page.keyboard.press('ArrowDown');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'visible' });
  assert.equal(await active(), 'herald-item');
  // Tab walks through the rows' actions (Archive, Mark as unread, Delete) and the panel's
  // buttons, then out of the panel, which closes it. Bounded: two rows' worth of stops.
  const panel = page.locator('[data-testid="herald-panel"]');
  const stops = [];
  for (let i = 0; i < 20 && (await panel.count()) > 0; i++) {
    await page.keyboard.press('Tab');
    stops.push(await page.evaluate(() => document.activeElement?.textContent?.trim().slice(0, 20) || document.activeElement?.tagName));
  }
  assert.ok(stops.some((t) => /Archive/.test(t)), `the row actions are reachable by Tab: ${stops.join(' | ')}`);
  await panel.waitFor({ state: 'detached' });
  assert.notEqual(await active(), 'BODY');
  await ctx.close();
});

test('10. demo page: sign-in replaces the suggestion and explains spaces; sign-out sticks; 375 px fits; no dead links; one name per state', async () => {
  const ctx = await newContext();
  const page = await ctx.newPage();
  await page.goto(`${cluster.lbUrl}/`, { waitUntil: 'domcontentloaded' });
  const input = page.locator('input[name="user"]');
  await input.waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.activeElement?.getAttribute('name') === 'user');
  await page.keyboard.type('bob');
  assert.equal(await input.inputValue(), 'bob', 'typing replaces the prefilled suggestion');
  await page.keyboard.type(' smith');
  assert.equal(await input.inputValue(), 'bob smith', 'spaces are not stripped silently');
  assert.match(await page.locator('[data-testid="user-problem"]').textContent(), /can’t contain spaces/);
  assert.equal(await page.locator('button[type="submit"]').isDisabled(), true);
  await input.fill(`ivan-${run}`);
  await page.keyboard.press('Enter');
  await waitOpen(page);
  // One name for the connection state: the page's pill says what the bell says.
  await openBell(page);
  assert.equal(await page.locator('[data-testid="conn-label"]').textContent(), 'Live');
  assert.equal(await page.locator('.hn-panel__status').textContent(), 'Live');
  // No links that lead nowhere.
  const dead = await page.evaluate(() => [...document.querySelectorAll('a')].filter((a) => !a.getAttribute('href') || a.getAttribute('href').startsWith('#')).length);
  assert.equal(dead, 0);
  // Notification links sent from the demo's own form lead somewhere when opened in a new tab
  // (they used to be /orders/1042 etc.: a 404 from the gateway).
  await page.keyboard.press('Escape');
  const types = await page.locator('select[name="type"] option').evaluateAll((os) => os.map((o) => o.value));
  let sent = 0;
  for (const t of types) {
    await page.locator('select[name="type"]').selectOption(t);
    if (!(await page.locator('input[name="link"]').inputValue())) continue;
    await page.getByRole('button', { name: 'Send notification' }).click();
    await page.waitForFunction((n) => document.querySelector('[data-testid="send-status"]')?.textContent.includes(`seq ${n}`), ++sent);
  }
  assert.ok(sent >= 5, `sent ${sent} notifications with links`);
  await page.waitForFunction((n) => window.__herald.notifications.length >= n, sent);
  await openBell(page);
  const hrefs = await page.locator('a[data-testid="herald-item"]').evaluateAll((as) => as.map((a) => a.href));
  assert.equal(hrefs.length, sent, 'every demo notification is a link');
  for (const href of hrefs) {
    const res = await page.request.get(href);
    assert.notEqual(res.status(), 404, `${href} exists`);
    assert.match(res.headers()['content-type'] ?? '', /text\/html/, `${href} is a page`);
  }
  // Opened in a new tab (signed in), it shows the route; clicked in place, the banner says so too.
  const tab = await ctx.newPage();
  await tab.goto(`${hrefs[0].replace('/#/', `/?user=ivan-${run}#/`)}`, { waitUntil: 'domcontentloaded' });
  await tab.locator('[data-testid="nav-banner"]').waitFor({ state: 'visible' });
  assert.match(await tab.locator('[data-testid="nav-banner"]').textContent(), /#\/\w+/);
  await tab.close();
  await page.locator('a[data-testid="herald-item"]').first().click();
  await page.locator('[data-testid="nav-banner"]').waitFor({ state: 'visible' });
  assert.ok(new URL(page.url()).hash.startsWith('#/'), 'an in-page route');
  await ctx.close();

  // Signed in through ?user=: signing out and reloading stays signed out.
  const ctx2 = await newContext();
  const p2 = await openDemo(ctx2, `judy-${run}`, null);
  await p2.locator('[data-testid="sign-out"]').click();
  await p2.locator('input[name="user"]').waitFor({ state: 'visible' });
  assert.equal(new URL(p2.url()).searchParams.get('user'), null);
  await p2.reload({ waitUntil: 'domcontentloaded' });
  await p2.locator('input[name="user"]').waitFor({ state: 'visible' });
  assert.equal(await p2.locator('[data-testid="conn-info"]').count(), 0, 'still signed out after reload');
  await ctx2.close();

  // 375 px wide: the whole top bar is on screen, nothing scrolls sideways.
  const ctx3 = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 1 });
  ctx3.setDefaultTimeout(WAIT);
  const p3 = await openDemo(ctx3, `kim-with-a-long-name-${run}`, null);
  for (const sel of ['[data-testid="herald-bell"]', '.avatar', '[data-testid="sign-out"]']) {
    const box = await p3.locator(sel).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${sel} on screen at 375 px: ${JSON.stringify(box)}`);
  }
  assert.ok((await p3.evaluate(() => document.documentElement.scrollWidth)) <= 375, 'no horizontal overflow');
  await openBell(p3);
  const panel = await p3.locator('[data-testid="herald-panel"]').boundingBox();
  assert.ok(panel.x >= 0 && panel.x + panel.width <= 375, `panel on screen: ${JSON.stringify(panel)}`);
  await p3.screenshot({ path: join(ARTIFACTS, 'demo-375.png') });
  await ctx3.close();
});

test('11. a first connect with many pending notifications renders a capped page, not all of them', async () => {
  const user = `leo-${run}`;
  const count = 120;
  // One HTTP publish with many recipients is not a thing; publish one by one (fast on loopback).
  for (let i = 1; i <= count; i++) await cluster.publish(cluster.lbUrl, { recipient: user, type: 'generic', title: `Pending ${i}`, body: '' });
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await page.waitForFunction((n) => window.__herald.notifications.length >= n, count, { timeout: WAIT });
  await openBell(page);
  assert.equal(await page.locator('[data-testid="herald-item"]').count(), 50, 'first render capped at 50 rows');
  await page.locator('[data-testid="herald-load-more"]').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="herald-item"]').length === 100, null, { timeout: WAIT });
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'herald-item', 'focus on the first older row');
  // Keep pressing Load older from the keyboard to the end: the last press asks the server, nothing
  // older exists, the button goes away — and focus lands on the last row, not <body>.
  const more = page.locator('[data-testid="herald-load-more"]');
  for (let i = 0; i < 10 && (await more.count()); i++) {
    await more.focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => {
      const b = document.querySelector('[data-testid="herald-load-more"]');
      return !b || b.getAttribute('aria-disabled') !== 'true';
    }, null, { timeout: WAIT });
  }
  assert.equal(await more.count(), 0, 'Load older gone at the end of the list');
  const focus = await page.evaluate(() => {
    const rows = [...document.querySelectorAll('[data-testid="herald-item"]')];
    return { testid: document.activeElement?.getAttribute('data-testid') ?? document.activeElement?.tagName, last: document.activeElement === rows[rows.length - 1] };
  });
  assert.deepEqual(focus, { testid: 'herald-item', last: true }, 'focus on the last row after the final Load older');
  await ctx.close();
});

test('11b. focus stays in place: Mark all as read from the keyboard, Enter on toasts, Retry after a failed load, Shift+Tab out', async () => {
  const user = `mona-${run}`;
  for (let i = 1; i <= 2; i++) await cluster.publish(cluster.lbUrl, { recipient: user, type: 'task.assigned', title: `Focus ${i}`, body: '' });
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await waitBadge(page, 2);
  const active = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') || document.activeElement?.tagName);
  const inPanel = () => page.evaluate(() => !!document.querySelector('[data-testid="herald-panel"]')?.contains(document.activeElement));

  // Mark all as read: the button becomes disabled; focus stays in the panel.
  await openBell(page);
  await page.locator('.hn-panel__header .hn-link-button').focus();
  await page.keyboard.press('Enter');
  await waitBadge(page, 0);
  await page.waitForFunction(() => document.querySelector('.hn-panel__header .hn-link-button')?.disabled);
  assert.equal(await inPanel(), true, `focus inside the panel after Mark all as read (on ${await active()})`);

  // Shift+Tab from the bell: focus goes before it (or out of the page); the panel closes.
  await page.locator('[data-testid="herald-bell"]').focus();
  await page.keyboard.press('Shift+Tab');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });

  // Enter on a toast: it is read and goes away; focus moves to the next toast, then to the bell.
  const ids = [];
  for (let i = 3; i <= 4; i++) ids.push((await cluster.publish(cluster.lbUrl, { recipient: user, type: 'comment.created', title: `Toast ${i}`, body: '' })).notifications[0].id);
  for (const id of ids) await page.locator(`[data-testid="herald-toast"][data-id="${id}"]`).waitFor({ state: 'visible' });
  await page.locator('[data-testid="herald-bell"]').focus();
  await page.locator('[data-testid="herald-toast-open"]').first().focus();
  await page.keyboard.press('Enter');
  await waitBadge(page, 1);
  assert.equal(await active(), 'herald-toast-open', 'focus on the next toast');
  await page.keyboard.press('Enter');
  await waitBadge(page, 0);
  assert.equal(await active(), 'herald-bell', 'focus back on the bell after the last toast');
  await ctx.close();

  // Retry after a failed list load: focus stays in the panel.
  const ctx2 = await newContext();
  const failList = (route) => route.abort();
  await ctx2.route(/\/v1\/notifications\?/, failList);
  const p2 = await openDemo(ctx2, user, null);
  await openBell(p2);
  await p2.locator('[data-testid="herald-retry"]').waitFor({ state: 'visible' });
  await ctx2.unroute(/\/v1\/notifications\?/, failList);
  await p2.locator('[data-testid="herald-retry"]').focus();
  await p2.keyboard.press('Enter');
  await p2.locator('[data-testid="herald-item"]').first().waitFor({ state: 'visible' });
  const where = await p2.evaluate(() => ({
    inPanel: !!document.querySelector('[data-testid="herald-panel"]')?.contains(document.activeElement),
    on: document.activeElement?.getAttribute('data-testid') || document.activeElement?.tagName,
  }));
  assert.equal(where.inPanel, true, `focus inside the panel after Retry (on ${where.on})`);
  await ctx2.close();
});

test('11c. reads made elsewhere while offline show after reconnecting: badge and rows agree', async () => {
  const user = `nina-${run}`;
  const ids = [];
  for (let i = 1; i <= 3; i++) ids.push((await cluster.publish(cluster.lbUrl, { recipient: user, type: 'task.assigned', title: `Read elsewhere ${i}`, body: '' })).notifications[0].id);
  const ctxA = await newContext();
  const a = await openDemo(ctxA, user, 'node-a');
  await waitBadge(a, 3);
  await openBell(a);
  await ctxA.setOffline(true);
  await a.waitForFunction(() => document.body.dataset.state === 'offline', null, { timeout: WAIT });

  const ctxB = await newContext();
  const b = await openDemo(ctxB, user, 'node-b');
  await waitBadge(b, 3);
  await openBell(b);
  await b.locator('.hn-panel__header .hn-link-button').click();
  await waitBadge(b, 0);
  await ctxB.close();

  await ctxA.setOffline(false);
  await waitOpen(a);
  await waitBadge(a, 0);
  await a.waitForFunction(
    (ids) => ids.every((id) => document.querySelector(`[data-testid="herald-item"][data-id="${id}"]`)?.getAttribute('data-unread') === 'false'),
    ids,
    { timeout: WAIT },
  );
  assert.equal(await a.evaluate(() => window.__herald.notifications.filter((n) => !n.read_at).length), 0);
  await ctxA.close();
});

test('11d. colours set on :root apply under theme light, dark, and auto with a dark system', async () => {
  const ctx = await newContext();
  const page = await openDemo(ctx, `olga-${run}`, null);
  await openBell(page);
  await page.addStyleTag({ content: ':root { --hn-bg: rgb(1, 2, 3); --hn-fg: rgb(250, 240, 230); }' });
  const look = () =>
    page.evaluate(() => ({
      panel: getComputedStyle(document.querySelector('[data-testid="herald-panel"]')).backgroundColor,
      title: getComputedStyle(document.querySelector('.hn-panel__title')).color,
    }));
  const setTheme = (t) =>
    page.evaluate((t) => {
      for (const el of document.querySelectorAll('[data-hn-theme]')) el.setAttribute('data-hn-theme', t);
    }, t);
  for (const [theme, scheme] of [['light', 'light'], ['dark', 'light'], ['auto', 'dark'], ['auto', 'light']]) {
    await page.emulateMedia({ colorScheme: scheme });
    await setTheme(theme);
    assert.deepEqual(await look(), { panel: 'rgb(1, 2, 3)', title: 'rgb(250, 240, 230)' }, `override applies: theme=${theme}, system ${scheme}`);
  }
  // A per-theme override (documented in styles.css) beats the :root one for that theme only.
  await page.addStyleTag({ content: '[data-hn-theme="dark"] { --hn-bg: rgb(9, 9, 9); }' });
  await setTheme('dark');
  assert.equal((await look()).panel, 'rgb(9, 9, 9)');
  await setTheme('light');
  assert.equal((await look()).panel, 'rgb(1, 2, 3)');
  await ctx.close();
});

// ------------------------------------------------------------------------- accessibility

/**
 * axe-core (pinned, injected into the page) on the whole document: every rule axe runs by
 * default (color-contrast included) plus label-content-name-mismatch. Returns the serious and
 * critical violations, and the selectors of every node whose text contrast axe evaluated.
 */
async function axeRun(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE_PATH });
  return page.evaluate(async () => {
    // Short text ("3" in the badge, "×" on a toast) is skipped by default: check it too.
    // (configure replaces a check's options wholesale: keep the defaults, flip the one flag).
    const defaults = window.axe._audit.checks['color-contrast'].options;
    window.axe.configure({ checks: [{ id: 'color-contrast', options: { ...defaults, ignoreLength: true } }] });
    const r = await window.axe.run(document, {
      rules: { 'label-content-name-mismatch': { enabled: true } },
      resultTypes: ['violations', 'passes', 'incomplete'],
      elementRef: true,
    });
    // What each node is, by the classes of it and its ancestors (axe's own selectors are terse).
    const what = (n) => {
      const el = n.element;
      const cls = (e) => (e && e.className && typeof e.className === 'string' ? e.className : '');
      return `${n.target.join(' ')} {${cls(el)} < ${cls(el?.parentElement)} < ${cls(el?.parentElement?.parentElement)} < ${cls(el?.closest('.hn-item'))}}`;
    };
    const nodesOf = (list, id) => (list.find((x) => x.id === id)?.nodes ?? []).map(what);
    return {
      violations: r.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => `${n.target.join(' ')} — ${n.failureSummary?.split('\n').slice(1, 2).join(' ').trim()}`) })),
      // Live regions inside live regions (screen readers announce them twice, or not at all).
      nestedLive: [...document.querySelectorAll('[aria-live],[role=status],[role=alert],[role=log]')].filter((el) =>
        el.parentElement?.closest('[aria-live],[role=status],[role=alert],[role=log]'),
      ).length,
      // Focusable non-controls standing in for buttons.
      focusableDivs: [...document.querySelectorAll('div[tabindex],li[tabindex],span[tabindex],[role=button]:not(button)')].length,
      contrastPassed: nodesOf(r.passes, 'color-contrast'),
      contrastIncompleteRaw: (r.incomplete.find((x) => x.id === 'color-contrast')?.nodes ?? []).map((n) => `${n.target.join(' ')}: ${n.any.map((c) => c.message).join('; ')}`),
      contrastFailed: nodesOf(r.violations, 'color-contrast'),
    };
  });
}

/** Waits out entry animations (a half-faded toast is not what users read). */
const settle = (page) => page.waitForTimeout(450);

/** WCAG relative luminance contrast of two `rgb()/rgba()` colours (alpha ignored: opaque in practice). */
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

test('12. accessibility: no serious or critical axe violations on the demo — sign-in and signed-in, panel open and closed, toasts, light and dark, desktop and 375 px', async () => {
  const user = `axe-${run}`;
  const report = [];
  const evaluated = { time: false, timeUnread: false, badge: false, toastClose: false };
  for (const colorScheme of ['light', 'dark']) {
    for (const width of [1200, 375]) {
      const tag = `${colorScheme}-${width}`;
      const ctx = await browser.newContext({ viewport: { width, height: 760 }, deviceScaleFactor: 1, colorScheme });
      ctx.setDefaultTimeout(WAIT);
      const check = async (page, state) => {
        await settle(page);
        const r = await axeRun(page);
        for (const v of r.violations) report.push(`[${state} ${tag}] ${v.id} (${v.impact}): ${v.help}\n      ${v.nodes.join('\n      ')}`);
        const all = [...r.contrastPassed, ...r.contrastFailed];
        if (all.some((t) => t.includes('{hn-item__time'))) evaluated.time = true;
        if (all.some((t) => t.includes('{hn-item__time') && t.includes('is-unread}'))) evaluated.timeUnread = true;
        if (all.some((t) => t.includes('{hn-badge'))) evaluated.badge = true;
        if (all.some((t) => t.includes('{hn-toast__close'))) evaluated.toastClose = true;
        if (r.nestedLive) report.push(`[${state} ${tag}] ${r.nestedLive} live region(s) nested in another`);
        if (r.focusableDivs) report.push(`[${state} ${tag}] ${r.focusableDivs} focusable non-button element(s) acting as buttons`);
        const hn = r.contrastIncompleteRaw.filter((t) => t.includes('hn-'));
        if (hn.length) console.error(`[${state} ${tag}] contrast not decided by axe:\n  ${hn.join('\n  ')}`);
        await page.screenshot({ path: join(ARTIFACTS, `a11y-${state}-${tag}.png`), animations: 'disabled' });
      };

      // Sign-in page.
      const page = await ctx.newPage();
      page.on('pageerror', (e) => console.error(`[page ${user}] error:`, e.message));
      await page.goto(`${cluster.lbUrl}/`, { waitUntil: 'domcontentloaded' });
      await page.locator('input[name="user"]').waitFor({ state: 'visible' });
      await check(page, 'signin');

      // Signed in, panel closed, two toasts on screen (hovered: paused, so they stay for the check).
      await page.locator('input[name="user"]').fill(`${user}-${tag}`);
      await page.keyboard.press('Enter');
      await waitOpen(page);
      await page.evaluate(() => document.body.dataset.state);
      const sent = [];
      for (const [type, title, body, link] of [
        ['comment.created', 'Bob commented on your post', 'Looks great! Ship it', '/posts/7'],
        ['order.shipped', 'Order #1042 has shipped', 'Arriving Thursday via UPS.', '/orders/1042'],
        ['task.assigned', 'New task: Update billing docs', 'Assigned to you by Dana', '/tasks/88'],
      ]) {
        const r = await cluster.publish(cluster.lbUrl, { recipient: `${user}-${tag}`, type, title, body, link });
        sent.push(r.notifications[0].id);
      }
      await waitBadge(page, 3);
      const toast = page.locator('[data-testid="herald-toast"]').first();
      await toast.waitFor({ state: 'visible' });
      await toast.hover();
      await check(page, 'closed-toasts');

      // Panel open, with unread and read rows.
      await page.evaluate((id) => window.__herald.markRead(id), sent[0]);
      await waitBadge(page, 2);
      await page.mouse.move(1, 400);
      await openBell(page);
      await page.locator(`[data-testid="herald-item"][data-id="${sent[0]}"][data-unread="false"]`).waitFor();
      await check(page, 'open');

      // The bell's keyboard focus ring stands out from the bar it sits on (WCAG 1.4.11, 3:1).
      await page.keyboard.press('Escape');
      await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
      const ring = await page.evaluate(() => {
        const b = document.querySelector('[data-testid="herald-bell"]');
        const cs = getComputedStyle(b);
        let el = b.parentElement;
        while (el && getComputedStyle(el).backgroundColor.replace(/\s/g, '').match(/rgba\(0,0,0,0\)|transparent/)) el = el.parentElement;
        return { visible: b.matches(':focus-visible'), style: cs.outlineStyle, width: cs.outlineWidth, color: cs.outlineColor, bg: el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)' };
      });
      assert.ok(ring.visible, 'Escape leaves keyboard focus (focus-visible) on the bell');
      assert.notEqual(ring.style, 'none');
      const ratio = contrast(ring.color, ring.bg);
      if (ratio < 3) report.push(`[focus ${tag}] bell focus ring ${ring.color} on ${ring.bg}: ${ratio.toFixed(2)}:1 (< 3:1)`);
      await ctx.close();
    }
  }
  console.error('contrast evaluated:', JSON.stringify(evaluated));
  if (report.length) console.error(`axe: ${report.length} serious/critical finding(s):\n  ${report.join('\n  ')}`);
  assert.deepEqual(report, [], 'serious/critical accessibility violations (printed above)');
  // The contrast rule really looked at the elements this check exists for.
  assert.deepEqual(evaluated, { time: true, timeUnread: true, badge: true, toastClose: true }, 'axe color-contrast evaluated timestamps, badge and toast close');
});

test('13. themable and localisable: dark colours everywhere, right-to-left layout, Intl times, long titles clamped, line breaks kept, broken avatar falls back', async () => {
  const user = `theme-${run}`;
  const long = `A very long title ${'that keeps going and going '.repeat(6)}end`; // < 200 chars (the API's limit)
  const pub = async (over) => (await cluster.publish(cluster.lbUrl, { recipient: user, type: 'order.shipped', title: 'Shipped', body: '', ...over })).notifications[0].id;
  const idBreaks = await pub({ title: 'Two lines', body: 'line one\nline two' });
  const idAvatar = await pub({ title: 'Broken avatar', body: '', avatar_url: '/no-such-avatar.png' });
  const idLong = await pub({ title: long, body: 'short' });

  // Dark (system preference), French times, right to left.
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 }, deviceScaleFactor: 1, colorScheme: 'dark' });
  ctx.setDefaultTimeout(WAIT);
  const page = await ctx.newPage();
  await page.goto(`${cluster.lbUrl}/?${new URLSearchParams({ user, dir: 'rtl', lang: 'fr' })}`, { waitUntil: 'domcontentloaded' });
  await waitOpen(page);
  await waitBadge(page, 3);
  await openBell(page);
  await page.locator(`[data-testid="herald-item"][data-id="${idLong}"]`).waitFor();
  await settle(page);

  // Dark: the panel, rows, icon circles, footer and badge ring are all dark (no light leftovers).
  const colours = await page.evaluate(() => {
    const panel = document.querySelector('[data-testid="herald-panel"]');
    const footer = document.createElement('div'); // the footer only shows with viewAllHref: probe its style
    footer.className = 'hn-panel__footer';
    panel.appendChild(footer);
    const bg = (sel) => getComputedStyle(typeof sel === 'string' ? document.querySelector(sel) : sel).backgroundColor;
    const out = {
      panel: bg('[data-testid="herald-panel"]'),
      unread: bg('[data-testid="herald-item"].is-unread'),
      icon: bg('.hn-item__icon'),
      footer: bg(footer),
      fg: getComputedStyle(document.querySelector('.hn-item__title')).color,
    };
    footer.remove();
    return out;
  });
  const lum = (c) => {
    const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number);
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  };
  for (const k of ['panel', 'unread', 'icon', 'footer']) assert.ok(lum(colours[k]) < 0.25, `${k} is dark under the dark theme: ${colours[k]}`);
  assert.ok(lum(colours.fg) > 0.75, `text is light under the dark theme: ${colours.fg}`);

  // Intl times in the page's locale.
  const expected = await page.evaluate(() => new Intl.RelativeTimeFormat('fr', { numeric: 'auto', style: 'short' }).format(0, 'second'));
  assert.equal(await page.locator(`[data-testid="herald-item"][data-id="${idLong}"] time`).textContent(), expected);

  // Long title: clamped to two lines; body line breaks kept (two lines for a short two-line body).
  const lines = await page.evaluate(
    ([idLong, idBreaks]) => {
      const t = document.querySelector(`[data-testid="herald-item"][data-id="${idLong}"] .hn-item__title`);
      const b = document.querySelector(`[data-testid="herald-item"][data-id="${idBreaks}"] .hn-item__body`);
      const lh = (el) => parseFloat(getComputedStyle(el).lineHeight);
      return { title: t.clientHeight / lh(t), titleCut: t.scrollHeight > t.clientHeight + 1, body: b.getBoundingClientRect().height / lh(b) };
    },
    [idLong, idBreaks],
  );
  assert.equal(Math.round(lines.title), 2, `long title clamped to 2 lines: ${JSON.stringify(lines)}`);
  assert.ok(lines.titleCut, 'the long title is cut, not just short');
  assert.equal(Math.round(lines.body), 2, `body keeps its line break: ${JSON.stringify(lines)}`);

  // A broken avatar shows the type icon instead.
  await page.waitForFunction((id) => !document.querySelector(`[data-testid="herald-item"][data-id="${id}"] img`), idAvatar, { timeout: WAIT });
  assert.equal((await page.locator(`[data-testid="herald-item"][data-id="${idAvatar}"] .hn-item__icon`).textContent()).trim(), '📦');

  // Right to left: the bar mirrors (bell on the left half), the panel hangs inward from the
  // bell and stays on screen, its text starts at the right.
  const bell = await page.locator('[data-testid="herald-bell"]').boundingBox();
  const panel = await page.locator('[data-testid="herald-panel"]').boundingBox();
  assert.ok(bell.x < 600, `bell on the left in RTL: ${JSON.stringify(bell)}`);
  assert.ok(panel.x >= 0 && panel.x + panel.width <= 1200, `panel on screen: ${JSON.stringify(panel)}`);
  assert.ok(Math.abs(panel.x - bell.x) < 40, `panel hangs from the bell's inline end (left in RTL): panel ${panel.x}, bell ${bell.x}`);
  const title = await page.locator('.hn-panel__title').boundingBox();
  assert.ok(title.x + title.width > panel.x + panel.width - 40, 'panel heading starts at the right');
  await page.mouse.move(600, 700);
  await page.screenshot({ path: join(ARTIFACTS, 'theme-dark-rtl-panel.png'), animations: 'disabled' });

  // Toasts in RTL sit at the bottom left.
  await page.keyboard.press('Escape');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
  const idToast = await pub({ title: 'Un toast', body: 'à gauche' });
  const toast = page.locator(`[data-testid="herald-toast"][data-id="${idToast}"]`);
  await toast.waitFor({ state: 'visible' });
  await toast.hover();
  await settle(page);
  const tb = await toast.boundingBox();
  assert.ok(tb.x < 100, `toast at the left in RTL: ${JSON.stringify(tb)}`);
  await page.screenshot({ path: join(ARTIFACTS, 'theme-dark-rtl-toast.png'), animations: 'disabled' });
  const r = await axeRun(page);
  assert.deepEqual(r.violations, [], 'no serious/critical axe violations in dark RTL');
  await ctx.close();
});

test('14. screenshots of the bell, panel and toasts in light, dark and 375 px are in test-artifacts/', async () => {
  const { statSync } = await import('node:fs');
  const files = [];
  for (const scheme of ['light', 'dark'])
    for (const width of [1200, 375]) for (const state of ['signin', 'closed-toasts', 'open']) files.push(`a11y-${state}-${scheme}-${width}.png`);
  files.push('theme-dark-rtl-panel.png', 'theme-dark-rtl-toast.png');
  for (const f of files) assert.ok(statSync(join(ARTIFACTS, f)).size > 5000, `${f} looks empty`);
});

const toast = (page, id) => page.locator(`[data-testid="herald-toast"][data-id="${id}"]`);
const pubTo = async (base, user, title) => (await cluster.publish(base, { recipient: user, type: 'comment.created', title, body: '' })).notifications[0].id;

test('15. toasts: a burst shows at most 3 plus "+N more"', async () => {
  const user = `olga-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null, { query: { toastMs: 60_000 } }); // (nothing times out mid-check)
  const ids = [];
  for (let i = 1; i <= 5; i++) ids.push(await pubTo(cluster.lbUrl, user, `Burst ${i}`));
  await waitBadge(page, 5);
  await page.locator('[data-testid="herald-toast-more"]', { hasText: '+2 more' }).waitFor({ state: 'visible' });
  // Three are on screen, the newest first.
  const shown = await page.locator('[data-testid="herald-toast"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
  assert.deepEqual(shown, ids.slice(2).reverse(), 'the three newest toasts, newest first');
  assert.equal((await page.locator('[data-testid="herald-toast-more"]').textContent()).trim(), '+2 more');
  await page.screenshot({ path: join(ARTIFACTS, 'toast-burst.png'), animations: 'disabled' });
  await ctx.close();
});

test('16. toasts: keyboard focus pauses one past its timeout; it goes once focus leaves', async () => {
  const user = `pablo-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null, { query: { toastMs: 2000 } });
  await page.mouse.move(0, 0); // (hovering also pauses: keep the pointer away from the toasts)
  const idA = await pubTo(cluster.lbUrl, user, 'Focused');
  await toast(page, idA).waitFor({ state: 'visible' });
  await toast(page, idA).locator('[data-testid="herald-toast-open"]').focus();
  // B arrives after A and is not focused: once its 2 s are up, A's (which began earlier) are too.
  const idB = await pubTo(cluster.lbUrl, user, 'Not focused');
  await toast(page, idB).waitFor({ state: 'visible' });
  await toast(page, idB).waitFor({ state: 'detached' });
  await page.waitForTimeout(300);
  assert.equal(await toast(page, idA).isVisible(), true, 'the focused toast is still there after its timeout');
  assert.equal(await page.evaluate(() => document.activeElement?.closest('[data-testid="herald-toast"]')?.getAttribute('data-id')), idA);
  // Focus leaves: the timer runs again and the toast goes (bounded by WAIT).
  await page.locator('[data-testid="herald-bell"]').focus();
  await toast(page, idA).waitFor({ state: 'detached' });
  await ctx.close();
});

test('17. toasts: one goes away when its notification is read in another session', async () => {
  const user = `quinn-${run}`;
  const ctx1 = await newContext();
  const ctx2 = await newContext(); // another browser session: its own tabs, its own toasts
  const page1 = await openDemo(ctx1, user, 'node-a', { query: { toastMs: 600_000 } }); // (only a read can remove it)
  const page2 = await openDemo(ctx2, user, 'node-b');
  const idRead = await pubTo(cluster.lbUrl, user, 'Read on the other device');
  const idKept = await pubTo(cluster.lbUrl, user, 'Still unread');
  for (const id of [idRead, idKept]) await toast(page1, id).waitFor({ state: 'visible' });
  await openBell(page2);
  await page2.locator(`[data-testid="herald-item"][data-id="${idRead}"]`).click();
  await waitBadge(page2, 1);
  await toast(page1, idRead).waitFor({ state: 'detached' });
  await waitBadge(page1, 1);
  assert.equal(await toast(page1, idKept).isVisible(), true, 'the unread one stays');
  await ctx1.close();
  await ctx2.close();
});

test('18. cross-tab toast claim: of two tabs of one user, the visible, focused one toasts, the hidden one does not', async () => {
  // Headless Chromium reports every page as visible, and focus follows whichever page acted
  // last, so each tab's visibility and focus is set by an init script before the demo runs
  // (document.visibilityState / hidden / hasFocus, what HeraldClient's tab rank reads).
  const setVisible = (v) => {
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (v ? 'visible' : 'hidden') });
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => !v });
    Document.prototype.hasFocus = () => v;
  };
  const as = (v) => `(${setVisible})(${v})`;
  const user = `rosa-${run}`;
  const ctx = await newContext();
  // The hidden tab is on the node the notifications are published to, so it hears them first:
  // only the rank can make it give way.
  const hidden = await openDemo(ctx, user, 'node-a', { init: as(false) });
  const shown = await openDemo(ctx, user, 'node-b', { init: as(true) });
  assert.deepEqual(await hidden.evaluate(() => [document.visibilityState, document.hasFocus()]), ['hidden', false]);
  assert.deepEqual(await shown.evaluate(() => [document.visibilityState, document.hasFocus()]), ['visible', true]);
  const ids = [];
  for (let i = 1; i <= 3; i++) {
    const id = await pubTo(cluster.nodeUrls['node-a'], user, `Claim ${i}`);
    ids.push(id);
    await toast(shown, id).waitFor({ state: 'visible' });
  }
  await waitHolds(hidden, ids[2]);
  await hidden.waitForTimeout(1000); // past the hidden tab's claim window (4 × 120 ms)
  for (const id of ids) {
    assert.equal(await toastsFor(shown, id), 1, `visible tab toasted ${id}`);
    assert.equal(await toastsFor(hidden, id), 0, `hidden tab did not toast ${id}`);
  }
  await ctx.close();
});

test('19. web push: the demo registers its service worker and a (stubbed) subscription; a push delivered over CDP shows a system notification', async () => {
  // A browser here cannot reach a real push service: PushManager is stubbed with a
  // subscription carrying a real P-256 key (the server checks it is on the curve), and the
  // push is handed to the service worker by the DevTools protocol.
  const user = `piet-${run}`;
  const ecdh = createECDH('prime256v1');
  const sub = {
    endpoint: `https://push.example.invalid/e2e/${run}`,
    expirationTime: null,
    keys: { p256dh: ecdh.generateKeys().toString('base64url'), auth: randomBytes(16).toString('base64url') },
  };
  const stub = (json) => {
    let current = null;
    const make = () => ({ endpoint: json.endpoint, options: { applicationServerKey: null }, toJSON: () => json, unsubscribe: async () => ((current = null), true) });
    PushManager.prototype.subscribe = async () => (current = make());
    PushManager.prototype.getSubscription = async () => current;
  };
  const ctx = await newContext();
  await ctx.grantPermissions(['notifications'], { origin: cluster.lbUrl });
  const page = await openDemo(ctx, user, null, { init: `(${stub})(${JSON.stringify(sub)})` });
  const token = await page.evaluate(async (u) => {
    const r = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_id: u, ttl_secs: 600 }) });
    return (await r.json()).token;
  }, user);
  const stored = async () => {
    const r = await fetch(`${cluster.lbUrl}/v1/me/push-subscriptions`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    return (await r.json()).subscriptions.map((s) => s.endpoint);
  };

  const cdp = await ctx.newCDPSession(page);
  const registrations = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) if (!r.isDeleted) registrations.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');

  await page.locator('[data-testid="push-toggle"]').click();
  await page.locator('[data-testid="push-toggle"]', { hasText: 'Disable push' }).waitFor();
  assert.deepEqual(await stored(), [sub.endpoint], 'the subscription is registered with the server');

  const scope = `${cluster.lbUrl}/`;
  const deadline = Date.now() + WAIT;
  while (!registrations.has(scope) && Date.now() < deadline) await page.waitForTimeout(50);
  assert.ok(registrations.has(scope), `service worker registration for ${scope}: ${[...registrations.keys()]}`);
  const payload = { id: `push-${run}`, type: 'comment.created', title: `Pushed ${run}`, body: 'from the DevTools protocol', url: '/#/orders/1042', seq: 1 };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: cluster.lbUrl, registrationId: registrations.get(scope), data: JSON.stringify(payload) });
  const shown = async () =>
    page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data?.url }));
    });
  let notes = [];
  while (Date.now() < deadline) {
    notes = await shown();
    if (notes.length) break;
    await page.waitForTimeout(50);
  }
  assert.deepEqual(notes, [{ title: payload.title, body: payload.body, tag: payload.id, url: payload.url }]);

  await page.locator('[data-testid="push-toggle"]').click();
  await page.locator('[data-testid="push-toggle"]', { hasText: 'Enable push' }).waitFor();
  assert.deepEqual(await stored(), [], 'disabling removes it from the server');
  await ctx.close();
});

// ------------------------------------------------------------------------- inbox actions and preferences

/** A user token from the dev endpoint, for checking the server's state from the test itself. */
async function userToken(user) {
  const r = await fetch(`${cluster.lbUrl}/dev/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: user, ttl_secs: 600 }),
  });
  assert.equal(r.status, 200, `dev token: HTTP ${r.status}`);
  return (await r.json()).token;
}

async function userGet(user, path) {
  const r = await fetch(`${cluster.lbUrl}${path}`, { headers: { Authorization: `Bearer ${await userToken(user)}` } });
  assert.equal(r.status, 200, `GET ${path}: HTTP ${r.status}`);
  return r.json();
}

/** The ids of the rows the panel shows, sorted (order is checked elsewhere). */
const rowIds = (page) =>
  page.evaluate(() => [...document.querySelectorAll('[data-testid="herald-item"]')].map((e) => e.getAttribute('data-id')).sort());

/** Waits (bounded) until the panel shows exactly `ids`. */
async function waitRows(page, ids, what) {
  const want = [...ids].sort();
  try {
    await page.waitForFunction(
      (want) => JSON.stringify([...document.querySelectorAll('[data-testid="herald-item"]')].map((e) => e.getAttribute('data-id')).sort()) === JSON.stringify(want),
      want,
      { timeout: WAIT },
    );
  } catch (e) {
    assert.deepEqual(await rowIds(page), want, `${what}: ${e.message}`);
  }
}

const rowAction = (page, id, action) => page.locator(`li:has([data-testid="herald-item"][data-id="${id}"]) [data-testid="herald-action-${action}"]`);

async function pickFilter(page, key) {
  await page.locator(`[data-testid="herald-filter-${key}"]`).click();
  await page.locator(`[data-testid="herald-filter-${key}"][aria-pressed="true"]`).waitFor();
}

test('20. bell actions: archive, unarchive, mark unread and delete — each shows in a second tab on the other node without reload; the filters and the type select show the right rows', async () => {
  const user = `sam-${run}`;
  const ctx = await newContext();
  const a = await openDemo(ctx, user, 'node-a');
  const b = await openDemo(ctx, user, 'node-b');
  // Panels open first: no toasts then, so nothing covers the rows' buttons.
  await openBell(a);
  await openBell(b);
  const ids = {};
  for (const [k, type, title] of [
    ['comment', 'comment.created', 'Comment to act on'],
    ['task', 'task.assigned', 'Task to act on'],
    ['order', 'order.shipped', 'Order to act on'],
  ]) {
    ids[k] = (await cluster.publish(cluster.nodeUrls['node-b'], { recipient: user, type, title, body: '' })).notifications[0].id;
  }
  await waitBadge(a, 3);
  await waitBadge(b, 3);
  assert.equal(await a.locator('[data-testid="herald-filter-inbox"]').getAttribute('aria-pressed'), 'true', 'the bell starts on Inbox');
  const all = [ids.comment, ids.task, ids.order];
  await waitRows(a, all, 'inbox at start (a)');
  await waitRows(b, all, 'inbox at start (b)');

  // Archive in tab a: it leaves the inbox (and is read) in both tabs, and shows under Archived.
  await rowAction(a, ids.task, 'archive').click();
  await waitRows(a, [ids.comment, ids.order], 'inbox after archive (a)');
  await waitRows(b, [ids.comment, ids.order], 'inbox after archive (b, other node)');
  await waitBadge(a, 2);
  await waitBadge(b, 2);
  await pickFilter(b, 'archived');
  await waitRows(b, [ids.task], 'Archived (b)');
  assert.equal(await rowAction(b, ids.task, 'archive').count(), 0, 'an archived row offers Unarchive, not Archive');

  // Unarchive in tab b: back in tab a's inbox (read), gone from b's Archived.
  await rowAction(b, ids.task, 'unarchive').click();
  await waitRows(b, [], 'Archived after unarchive (b)');
  await waitRows(a, all, 'inbox after unarchive (a)');
  assert.equal(await a.locator(`[data-testid="herald-item"][data-id="${ids.task}"]`).getAttribute('data-unread'), 'false');

  // Mark as unread in tab a: the badge rises in both tabs; the row is unread in b's inbox too.
  await rowAction(a, ids.task, 'unread').click();
  await waitBadge(a, 3);
  await waitBadge(b, 3);
  await pickFilter(b, 'inbox');
  await waitRows(b, all, 'inbox (b)');
  await b.locator(`[data-testid="herald-item"][data-id="${ids.task}"][data-unread="true"]`).waitFor();

  // Unread filter: one read elsewhere (server-side, via tab a's client) drops out of b's Unread.
  await a.evaluate((id) => window.__herald.markRead(id), ids.order);
  await waitBadge(b, 2);
  await pickFilter(b, 'unread');
  await waitRows(b, [ids.comment, ids.task], 'Unread (b)');

  // Type select: one type, then every type again.
  await pickFilter(b, 'inbox');
  await b.locator('[data-testid="herald-filter-type"]').selectOption('order.shipped');
  await waitRows(b, [ids.order], 'inbox, type order.shipped (b)');
  await b.locator('[data-testid="herald-filter-type"]').selectOption('comment.created');
  await waitRows(b, [ids.comment], 'inbox, type comment.created (b)');
  await b.locator('[data-testid="herald-filter-type"]').selectOption('');
  await waitRows(b, all, 'inbox, all types (b)');

  // Delete in tab b: gone from both, and from the server.
  await rowAction(b, ids.comment, 'delete').click();
  await waitRows(b, [ids.task, ids.order], 'after delete (b)');
  await waitRows(a, [ids.task, ids.order], 'after delete (a, other node)');
  await waitBadge(a, 1);
  const counts = await userGet(user, '/v1/notifications/counts');
  assert.deepEqual({ total: counts.total, inbox: counts.inbox, unread: counts.unread, archived: counts.archived }, { total: 2, inbox: 2, unread: 1, archived: 0 });
  await ctx.close();
});

/** Opens the bell's settings view and waits for the form. */
async function openSettings(page) {
  await openBell(page);
  await page.locator('[data-testid="herald-settings"]').click();
  await page.locator('[data-testid="herald-prefs-form"]').waitFor({ state: 'visible' });
}

const toggle = (page, type, channel) => page.locator(`[data-testid="herald-prefs-toggle-${type}-${channel}"]`);

test('21. preferences: a channel switched off, quiet hours in a time zone and the digest persist (reload, GET); refused fields show the reason at the field; keyboard only', async () => {
  const user = `tess-${run}`;
  const ctx = await newContext();
  const page = await openDemo(ctx, user, null);
  await openSettings(page);
  // The server's types (HERALD_FALLBACK_TYPES of this cluster), `*` last; every channel on by default.
  const types = await page.evaluate(() => [...document.querySelectorAll('[data-testid="herald-prefs-row"]')].map((r) => r.getAttribute('data-type')));
  assert.deepEqual(types, ['comment.created', 'task.assigned', '*']);
  assert.equal(await toggle(page, 'comment.created', 'webhook').isChecked(), true);
  assert.equal(await page.getByRole('checkbox', { name: 'Webhook for comment.created' }).count(), 1, 'toggles are named by channel and type');
  // The time zone defaults to the browser's.
  const browserZone = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.equal(await page.locator('[data-testid="herald-prefs-tz"]').inputValue(), browserZone);

  await toggle(page, 'comment.created', 'webhook').uncheck();
  await page.locator('[data-testid="herald-prefs-quiet"]').check();
  await page.locator('[data-testid="herald-prefs-start"]').fill('22:30');
  await page.locator('[data-testid="herald-prefs-end"]').fill('07:15');
  await page.locator('[data-testid="herald-prefs-tz"]').selectOption('Asia/Tokyo');
  await page.locator('[data-testid="herald-prefs-digest"]').fill('30');
  await page.locator('[data-testid="herald-prefs-save"]').click();
  await page.locator('[data-testid="herald-prefs-status"]', { hasText: 'Settings saved.' }).waitFor();
  const want = {
    channels: { 'comment.created': { webhook: false }, 'task.assigned': { webhook: true }, '*': { webhook: true } },
    quiet_hours: { start: '22:30', end: '07:15', time_zone: 'Asia/Tokyo' },
    digest_window_secs: 1800,
  };
  assert.deepEqual(await userGet(user, '/v1/me/preferences'), want, 'stored on the server');

  // After a reload the form shows what is stored.
  await page.reload({ waitUntil: 'domcontentloaded' });
  await waitOpen(page);
  await openSettings(page);
  assert.equal(await toggle(page, 'comment.created', 'webhook').isChecked(), false);
  assert.equal(await toggle(page, 'task.assigned', 'webhook').isChecked(), true);
  assert.equal(await page.locator('[data-testid="herald-prefs-quiet"]').isChecked(), true);
  assert.equal(await page.locator('[data-testid="herald-prefs-start"]').inputValue(), '22:30');
  assert.equal(await page.locator('[data-testid="herald-prefs-tz"]').inputValue(), 'Asia/Tokyo');
  assert.equal(await page.locator('[data-testid="herald-prefs-digest"]').inputValue(), '30');

  // A value the form permits but the server refuses (until = from): the reason at the field,
  // which is marked invalid and has focus; nothing stored.
  await page.locator('[data-testid="herald-prefs-end"]').fill('22:30');
  await page.locator('[data-testid="herald-prefs-save"]').click();
  const endErr = page.locator('[data-testid="herald-prefs-error-end"]');
  await endErr.waitFor();
  assert.match(await endErr.textContent(), /must differ from start/);
  assert.equal(await page.locator('[data-testid="herald-prefs-end"]').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'herald-prefs-end');
  assert.equal(await page.locator('[data-testid="herald-prefs-save-error"]').getAttribute('role'), 'alert');
  assert.deepEqual(await userGet(user, '/v1/me/preferences'), want, 'a refused save stores nothing');
  await page.screenshot({ path: join(ARTIFACTS, 'prefs-error.png'), animations: 'disabled' });

  // A time zone the select never offers, put into the request on its way: the server's reason
  // shows at the time zone select.
  await page.locator('[data-testid="herald-prefs-end"]').fill('07:15');
  await page.route('**/v1/me/preferences', async (route) => {
    const req = route.request();
    if (req.method() !== 'PUT') return route.continue();
    const body = JSON.parse(req.postData());
    body.quiet_hours.time_zone = 'Mars/Olympus_Mons';
    await route.continue({ postData: JSON.stringify(body) });
  });
  await page.locator('[data-testid="herald-prefs-save"]').click();
  const tzErr = page.locator('[data-testid="herald-prefs-error-timeZone"]');
  await tzErr.waitFor();
  assert.match(await tzErr.textContent(), /Mars\/Olympus_Mons.*IANA time zone/);
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'herald-prefs-tz');
  await page.unroute('**/v1/me/preferences');
  assert.deepEqual(await userGet(user, '/v1/me/preferences'), want);

  // Keyboard only: from the bell, Tab to the settings button, Space on a toggle, Enter on Save,
  // Back returns to the list with focus on the settings button, Escape closes on the bell.
  await page.reload({ waitUntil: 'domcontentloaded' });
  await waitOpen(page);
  const active = () => page.evaluate(() => document.activeElement?.getAttribute('data-testid') || document.activeElement?.tagName);
  await page.locator('[data-testid="herald-bell"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'visible' });
  const tabTo = async (testid) => {
    for (let i = 0; i < 40 && (await active()) !== testid; i++) await page.keyboard.press('Tab');
    assert.equal(await active(), testid, `Tab reaches ${testid}`);
  };
  await tabTo('herald-settings');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="herald-prefs-form"]').waitFor({ state: 'visible' });
  assert.equal(await active(), 'herald-panel-title', 'focus moves to the settings heading');
  assert.equal(await page.locator('[data-testid="herald-panel"]').getAttribute('aria-labelledby'), await page.locator('[data-testid="herald-panel-title"]').getAttribute('id'));
  assert.equal(await page.locator('[data-testid="herald-panel-title"]').textContent(), 'Notification settings');
  await tabTo('herald-prefs-toggle-comment.created-webhook');
  await page.keyboard.press('Space');
  assert.equal(await toggle(page, 'comment.created', 'webhook').isChecked(), true);
  await tabTo('herald-prefs-save');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="herald-prefs-status"]', { hasText: 'Settings saved.' }).waitFor();
  assert.equal((await userGet(user, '/v1/me/preferences')).channels['comment.created'].webhook, true);
  await page.keyboard.press('Shift+Tab');
  for (let i = 0; i < 40 && (await active()) !== 'herald-settings-back'; i++) await page.keyboard.press('Shift+Tab');
  assert.equal(await active(), 'herald-settings-back', 'Shift+Tab reaches Back');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="herald-prefs-form"]').waitFor({ state: 'detached' });
  assert.equal(await active(), 'herald-settings', 'Back returns focus to the settings button');
  await page.keyboard.press('Escape');
  await page.locator('[data-testid="herald-panel"]').waitFor({ state: 'detached' });
  assert.equal(await active(), 'herald-bell');
  await ctx.close();
});

test('22. accessibility: no serious or critical axe violations with the preferences view (and a refused field) open, and with the Archived filter and row actions shown, light and dark', async () => {
  const report = [];
  for (const colorScheme of ['light', 'dark']) {
    const user = `uma-${colorScheme}-${run}`;
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1, colorScheme });
    ctx.setDefaultTimeout(WAIT);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`[page ${user}] error:`, e.message));
    await page.goto(`${cluster.lbUrl}/?${new URLSearchParams({ user })}`, { waitUntil: 'domcontentloaded' });
    await waitOpen(page);
    const check = async (state) => {
      await page.mouse.move(1, 880);
      await settle(page);
      const r = await axeRun(page);
      for (const v of r.violations) report.push(`[${state} ${colorScheme}] ${v.id} (${v.impact}): ${v.help}\n      ${v.nodes.join('\n      ')}`);
      if (r.nestedLive) report.push(`[${state} ${colorScheme}] ${r.nestedLive} live region(s) nested in another`);
      await page.screenshot({ path: join(ARTIFACTS, `a11y-${state}-${colorScheme}.png`), animations: 'disabled' });
      return r;
    };
    const a = (await cluster.publish(cluster.lbUrl, { recipient: user, type: 'comment.created', title: 'Archived one', body: 'Kept for later' })).notifications[0].id;
    await cluster.publish(cluster.lbUrl, { recipient: user, type: 'task.assigned', title: 'Still in the inbox', body: '' });
    await waitBadge(page, 2);
    await page.evaluate((id) => window.__herald.archive(id), a);
    await waitBadge(page, 1);
    await openBell(page);
    await pickFilter(page, 'archived');
    await waitRows(page, [a], 'Archived');
    await rowAction(page, a, 'unarchive').waitFor();
    const r1 = await check('archived');
    assert.ok(r1.contrastPassed.concat(r1.contrastFailed).some((t) => t.includes('hn-action')), 'axe evaluated the row actions');

    await page.locator('[data-testid="herald-settings"]').click();
    await page.locator('[data-testid="herald-prefs-form"]').waitFor({ state: 'visible' });
    await page.locator('[data-testid="herald-prefs-quiet"]').check();
    const r2 = await check('prefs');
    assert.ok(r2.contrastPassed.concat(r2.contrastFailed).some((t) => t.includes('hn-prefs')), 'axe evaluated the preferences view');
    // With a refused field and the saved state.
    await page.locator('[data-testid="herald-prefs-end"]').fill(await page.locator('[data-testid="herald-prefs-start"]').inputValue());
    await page.locator('[data-testid="herald-prefs-save"]').click();
    await page.locator('[data-testid="herald-prefs-error-end"]').waitFor();
    await check('prefs-error');
    await page.locator('[data-testid="herald-prefs-end"]').fill('06:00');
    await page.locator('[data-testid="herald-prefs-save"]').click();
    await page.locator('[data-testid="herald-prefs-status"]', { hasText: 'Settings saved.' }).waitFor();
    await check('prefs-saved');
    await ctx.close();
  }
  // Right to left: the type column and the labels start on the right.
  const ctx = await newContext();
  const page = await openDemo(ctx, `uma-rtl-${run}`, null, { query: { dir: 'rtl' } });
  await openSettings(page);
  const typeBox = await page.locator('[data-testid="herald-prefs-row"][data-type="comment.created"] th').boundingBox();
  const toggleBox = await toggle(page, 'comment.created', 'webhook').boundingBox();
  assert.ok(typeBox.x > toggleBox.x, `rtl: the type (x ${typeBox.x}) is right of its toggle (x ${toggleBox.x})`);
  const tzLabel = await page.locator('label', { hasText: 'Time zone' }).boundingBox();
  const form = await page.locator('[data-testid="herald-prefs-form"]').boundingBox();
  assert.ok(tzLabel.x + tzLabel.width > form.x + form.width - 40, 'rtl: labels start at the right edge');
  await page.screenshot({ path: join(ARTIFACTS, 'prefs-rtl.png'), animations: 'disabled' });
  await ctx.close();
  if (report.length) console.error(`axe: ${report.length} serious/critical finding(s):\n  ${report.join('\n  ')}`);
  assert.deepEqual(report, [], 'serious/critical accessibility violations (printed above)');
});

// The first seed's `useNotifications` hook (its exact io() options and handlers, without
// React), with the official socket.io-client (pinned in package.json), against two Herald
// nodes behind HAProxy (web/e2e/cluster.mjs). Tokens are the seed's: `{ sub: <number> }`,
// HS256, no aud/iss. Run by conformance/socketio/run.sh (scripts/test.sh, stage socketio).
// The seed's hook asks for `transports: ['websocket']`; the clients with default options
// (long-polling, then the upgrade) go through the same balancer, which routes on the sid.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { startCluster } from '../../web/e2e/cluster.mjs';

const SECRET = randomBytes(32).toString('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let cluster;

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
/** The seed's token: `jwtService.sign({ sub: user.id })` with a numeric id. */
function seedToken(sub, ttlSecs = 3600, secret = SECRET) {
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + ttlSecs });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** The seed hook's logic: the same io() call and handlers, state in a plain object. */
function useNotifications(apiUrl, accessToken) {
  const state = { notifications: [], unreadCount: 0, isConnected: false, offsets: [] };
  const socket = io(`${apiUrl}/notifications`, {
    auth: { token: accessToken },
    transports: ['websocket'],
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionAttempts: 5,
  });
  socket.on('connect', () => {
    state.isConnected = true;
  });
  socket.on('disconnect', () => {
    state.isConnected = false;
  });
  socket.on('notification', (notification) => {
    state.notifications = [notification, ...state.notifications];
    state.unreadCount = state.unreadCount + 1;
  });
  const markAsRead = (notificationId) => {
    socket.emit('mark_read', { notificationId });
    state.notifications = state.notifications.map((n) => (n.id === notificationId ? { ...n, read: true } : n));
    state.unreadCount = Math.max(0, state.unreadCount - 1);
  };
  return { state, socket, markAsRead };
}

async function until(what, check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function publish(baseUrl, recipient, title) {
  const r = await fetch(`${baseUrl}/v1/notifications`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${cluster.serviceKey}` },
    body: JSON.stringify({ recipient: String(recipient), type: 'MENTION', title, body: `${title} body`, link: '/posts/1' }),
    signal: AbortSignal.timeout(10_000),
  });
  const j = await r.json();
  assert.equal(r.status, 201, JSON.stringify(j));
  return j.notifications[0].seq;
}

before(async () => {
  const staticDir = mkdtempSync(join(tmpdir(), 'herald-sio-static-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>herald</title>');
  cluster = await startCluster({
    staticDir,
    env: {
      HERALD_JWT_HS256_SECRET: SECRET,
      // The seed's tokens carry no aud/iss: the explicit opt-outs (docs/socketio.md).
      HERALD_JWT_AUDIENCE: '',
      HERALD_JWT_ISSUER: '',
      HERALD_JWT_ALLOW_ANY_AUDIENCE: 'true',
      HERALD_JWT_ALLOW_ANY_ISSUER: 'true',
    },
  });
});

after(async () => {
  await cluster?.stop();
});

test('the seed hook receives notifications published to either node, marks read, gets counts', async () => {
  const user = 1001;
  const { state, socket, markAsRead } = useNotifications(cluster.lbUrl, seedToken(user));
  let connected;
  socket.on('connected', (c) => {
    connected = c;
  });
  await until('connect', () => state.isConnected && connected);
  assert.equal(connected.userId, user);
  const a = await publish(cluster.nodeUrls['node-a'], user, 'from a');
  const b = await publish(cluster.nodeUrls['node-b'], user, 'from b');
  await until('both notifications', () => state.notifications.length === 2);
  assert.deepEqual(
    state.notifications.map((n) => n.seq),
    [b, a],
  );
  const n = state.notifications[0];
  for (const k of ['id', 'type', 'title', 'message', 'body', 'link', 'actionUrl', 'avatar', 'createdAt', 'read', 'readAt', 'seq']) {
    assert.ok(k in n, `missing ${k}`);
  }
  assert.equal(n.title, 'from b');
  assert.equal(n.message, 'from b body');
  assert.equal(n.read, false);
  assert.equal(state.unreadCount, 2);

  const reads = [];
  socket.on('unread_count', (c) => reads.push(c.unreadCount));
  markAsRead(n.id);
  assert.equal(state.unreadCount, 1);
  await until('the read sync', () => reads.includes(1));
  const count = await socket.timeout(5000).emitWithAck('get_unread_count');
  assert.equal(count.unreadCount, 1);
  const all = await socket.timeout(5000).emitWithAck('mark_all_read');
  assert.equal(all.success, true);
  assert.equal((await socket.timeout(5000).emitWithAck('get_unread_count')).unreadCount, 0);
  const acked = await socket.timeout(5000).emitWithAck('mark_read', { notificationId: n.id });
  assert.equal(acked.success, true);
  assert.equal(acked.notificationId, n.id);
  socket.disconnect();
});

test('default options: long-polling through the balancer, then the upgrade to WebSocket', async () => {
  const user = 3003;
  // No `transports`: socket.io-client starts with HTTP long-polling and upgrades.
  const socket = io(`${cluster.lbUrl}/notifications`, { auth: { token: seedToken(user) }, reconnection: false });
  let firstTransport;
  socket.io.on('open', () => {
    firstTransport = socket.io.engine.transport.name;
  });
  let upgradedTo;
  socket.io.engine.on('upgrade', (t) => {
    upgradedTo = t.name;
  });
  let connected;
  socket.on('connected', (c) => {
    connected = c;
  });
  const got = [];
  socket.on('notification', (n) => got.push(n.seq));
  await until('connect', () => socket.connected && connected);
  assert.equal(firstTransport, 'polling', 'a default client starts with long-polling');
  // The sid names the node that holds the session; the balancer routes on it.
  assert.ok(socket.io.engine.id.startsWith(`${connected.nodeId}~`), socket.io.engine.id);
  await until('the upgrade', () => socket.io.engine.transport.name === 'websocket');
  assert.equal(upgradedTo, 'websocket');
  const a = await publish(cluster.nodeUrls['node-a'], user, 'from a');
  const b = await publish(cluster.nodeUrls['node-b'], user, 'from b');
  await until('both notifications', () => got.length === 2);
  assert.deepEqual(got, [a, b]);
  const acked = await socket.timeout(5000).emitWithAck('mark_all_read');
  assert.equal(acked.success, true);
  assert.equal((await socket.timeout(5000).emitWithAck('get_unread_count')).unreadCount, 0);
  socket.disconnect();
});

test('default options: a session that stays on long-polling works through the balancer', async () => {
  const user = 3004;
  // `upgrade: false` keeps it on polling: every GET and POST must reach the session's node.
  const socket = io(`${cluster.lbUrl}/notifications`, { auth: { token: seedToken(user) }, upgrade: false, reconnection: false });
  const got = [];
  socket.on('notification', (n) => got.push(n.seq));
  let connected;
  socket.on('connected', (c) => {
    connected = c;
  });
  await until('connect', () => socket.connected && connected);
  const seqs = [];
  for (let i = 0; i < 6; i++) {
    seqs.push(await publish(cluster.nodeUrls[i % 2 ? 'node-a' : 'node-b'], user, `p${i}`));
    const c = await socket.timeout(5000).emitWithAck('get_unread_count');
    assert.ok(c.unreadCount >= 1);
  }
  await until('every notification', () => got.length === seqs.length);
  assert.deepEqual(got, seqs);
  assert.equal(socket.io.engine.transport.name, 'polling');
  const acked = await socket.timeout(5000).emitWithAck('mark_all_read');
  assert.equal(acked.success, true);
  socket.disconnect();
});

test('a bad or expired token is a connect_error', async () => {
  for (const token of [seedToken(7, 3600, 'not-the-secret'), seedToken(7, -3600), 'garbage']) {
    const { socket } = useNotifications(cluster.lbUrl, token);
    const err = await new Promise((res) => socket.on('connect_error', res));
    assert.ok(err.message.length > 0);
    assert.equal(socket.connected, false);
    socket.disconnect();
    if (token === 'garbage') assert.match(err.message, /unauthorized/);
  }
});

test('a node killed mid-stream: the client recovers and receives every notification exactly once', async () => {
  const user = 2002;
  const { state, socket } = useNotifications(cluster.lbUrl, seedToken(user));
  let nodeId;
  socket.on('connected', (c) => {
    nodeId = c.nodeId;
  });
  await until('connect', () => state.isConnected && nodeId);
  const victim = nodeId;
  const survivor = victim === 'node-a' ? 'node-b' : 'node-a';
  const seqs = [];
  let disconnected = false;
  socket.on('disconnect', () => {
    disconnected = true;
  });
  const N = 60;
  for (let i = 0; i < N; i++) {
    seqs.push(await publish(cluster.nodeUrls[survivor], user, `n${i}`));
    if (i === 20) await cluster.killNode(victim);
    await sleep(20);
  }
  await until('every notification', () => state.notifications.length >= N, 30_000);
  await sleep(500);
  assert.ok(disconnected, 'the client lost its node');
  assert.equal(socket.recovered, true, 'the reconnect recovered the session');
  const got = state.notifications.map((n) => n.seq).reverse();
  assert.deepEqual(got, seqs, 'every notification exactly once, in order');
  socket.disconnect();
  await cluster.startNode(victim);
});

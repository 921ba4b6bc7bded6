'use strict';
// Socket.IO baseline for the Herald load test (see README.md): the seed design — a Socket.IO
// gateway with JWT checked at the handshake, one room `user:<id>` per user, the Redis adapter
// between instances, and NotificationsService.create = one INSERT then emit to the room —
// written against plain socket.io@4 instead of NestJS (same architecture, less framework).
//
// Environment:
//   SIO_LISTEN          host:port to listen on (default 127.0.0.1:3001)
//   SIO_NODE_ID         name used in logs (default sio-<pid>)
//   SIO_DATABASE_URL    postgres://… (required)
//   SIO_TABLE           notifications table, created at startup (default sio_notifications)
//   SIO_PG_POOL         pg pool size (default 10, node-postgres' and TypeORM/Prisma-ish default)
//   SIO_REDIS_URL       redis://… (required)
//   SIO_REDIS_KEY       Redis adapter channel prefix (default socket.io)
//   SIO_JWT_SECRET      HS256 secret for user tokens (same as Herald's HERALD_JWT_HS256_SECRET)
//   SIO_SERVICE_KEYS    comma-separated service keys for POST /notifications and /broadcasts
//   SIO_NAMESPACE       Socket.IO namespace (default /notifications, as in the seed)
//   SIO_LOG             "info" logs every connection like the seed's Logger; default quiet

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');

const env = (k, d) => {
  const v = process.env[k];
  if (v === undefined || v === '') {
    if (d === undefined) { console.error(`missing ${k}`); process.exit(2); }
    return d;
  }
  return v;
};
const [HOST, PORT] = (() => {
  const l = env('SIO_LISTEN', '127.0.0.1:3001');
  const i = l.lastIndexOf(':');
  return [l.slice(0, i), Number(l.slice(i + 1))];
})();
const NODE_ID = env('SIO_NODE_ID', `sio-${process.pid}`);
const TABLE = env('SIO_TABLE', 'sio_notifications');
if (!/^[a-z_][a-z0-9_]*$/.test(TABLE)) { console.error('bad SIO_TABLE'); process.exit(2); }
const SECRET = env('SIO_JWT_SECRET');
const SERVICE_KEYS = new Set(env('SIO_SERVICE_KEYS').split(',').map((s) => s.trim()).filter(Boolean));
const NSP = env('SIO_NAMESPACE', '/notifications');
const VERBOSE = env('SIO_LOG', '') === 'info';
const log = (...a) => console.log(`[${NODE_ID}]`, ...a);

const pool = new Pool({ connectionString: env('SIO_DATABASE_URL'), max: Number(env('SIO_PG_POOL', '10')) });

async function migrate() {
  // Two instances may start together: retry the (idempotent) DDL on a catalog race.
  for (let i = 0; ; i++) {
    try {
      await pool.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (
        id          UUID DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id     TEXT NOT NULL,
        type        VARCHAR(50) NOT NULL,
        title       VARCHAR(255) NOT NULL,
        message     TEXT NOT NULL,
        link        VARCHAR(500),
        avatar_url  VARCHAR(500),
        data        JSONB,
        read        BOOLEAN DEFAULT false,
        created_at  TIMESTAMP DEFAULT NOW(),
        read_at     TIMESTAMP)`);
      await pool.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_user_unread
        ON ${TABLE}(user_id, read, created_at DESC) WHERE read = false`);
      return;
    } catch (e) {
      if (i >= 5) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > limit) { reject(Object.assign(new Error('too large'), { status: 413 })); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, obj) {
  const b = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
  res.end(b);
}

function serviceAuthorized(req) {
  const h = req.headers.authorization || '';
  return h.startsWith('Bearer ') && SERVICE_KEYS.has(h.slice(7));
}

const str = (v, max) => typeof v === 'string' && v.length > 0 && v.length <= max;

let nsp; // the Socket.IO namespace ("this.server" in the seed's gateway)

// NotificationsService.create: INSERT one row, then emit to the user's room.
async function createNotification(userId, d) {
  const { rows } = await pool.query(
    `INSERT INTO ${TABLE} (user_id, type, title, message, link, avatar_url, data)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     RETURNING id, type, title, message, link, avatar_url, data, created_at`,
    [userId, d.type, d.title, d.body ?? '', d.link ?? null, d.avatar ?? null, d.data ?? null],
  );
  const n = rows[0];
  const payload = {
    id: n.id,
    type: n.type,
    title: n.title,
    message: n.message,
    link: n.link || undefined,
    avatar: n.avatar_url || undefined,
    data: n.data || undefined,
    createdAt: n.created_at.toISOString(),
    read: false,
  };
  // The seed's sendToUser() first checks a per-instance userId → sockets map and skips the
  // emit when the user is not connected to *this* instance, which loses notifications for
  // users on the other instance; emitting to the room unconditionally is what the Redis
  // adapter section of the seed intends.
  nsp.to(`user:${userId}`).emit('notification', payload);
  return payload;
}

async function handle(req, res) {
  const url = req.url.split('?')[0];
  if (req.method === 'GET' && (url === '/readyz' || url === '/healthz')) {
    return send(res, 200, { ok: true, node: NODE_ID });
  }
  if (req.method === 'POST' && (url === '/notifications' || url === '/broadcasts')) {
    if (!serviceAuthorized(req)) return send(res, 401, { error: 'unauthorized' });
    let body;
    try {
      body = JSON.parse(await readBody(req));
    } catch (e) {
      return send(res, e.status || 400, { error: 'bad json' });
    }
    if (!body || !str(body.type, 50) || !str(body.title, 255)) {
      return send(res, 400, { error: 'type and title are required' });
    }
    if (url === '/broadcasts') {
      const payload = {
        id: require('node:crypto').randomUUID(), type: body.type, title: body.title,
        message: body.body ?? '', data: body.data ?? undefined, createdAt: new Date().toISOString(), read: false,
      };
      nsp.emit('global_notification', payload); // the seed's broadcastToAll
      return send(res, 202, { id: payload.id });
    }
    if (!str(body.recipient, 200)) return send(res, 400, { error: 'recipient is required' });
    try {
      const n = await createNotification(body.recipient, body);
      return send(res, 201, n);
    } catch (e) {
      log('insert failed:', e.message);
      return send(res, 500, { error: 'internal' });
    }
  }
  send(res, 404, { error: 'not found' });
}

async function main() {
  await migrate();
  const pub = createClient({ url: env('SIO_REDIS_URL') });
  const sub = pub.duplicate();
  pub.on('error', (e) => log('redis error', e.message));
  sub.on('error', (e) => log('redis error', e.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => { log('request failed', e); try { send(res, 500, { error: 'internal' }); } catch (_) {} });
  });
  server.keepAliveTimeout = 65_000;
  const io = new Server(server, {
    adapter: createAdapter(pub, sub, { key: env('SIO_REDIS_KEY', 'socket.io') }),
    cors: { origin: process.env.FRONTEND_URL || 'http://localhost:3000', credentials: true },
    serveClient: false,
  });
  nsp = io.of(NSP);

  // JWT at the handshake (the seed verifies in handleConnection; a middleware is the
  // Socket.IO-idiomatic place and refuses before the socket joins anything).
  nsp.use((socket, next) => {
    const token = socket.handshake.auth?.token
      || socket.handshake.headers.authorization?.replace('Bearer ', '');
    if (!token) return next(new Error('No token provided'));
    try {
      const claims = jwt.verify(token, SECRET, { algorithms: ['HS256'] });
      if (typeof claims.sub !== 'string' && typeof claims.sub !== 'number') throw new Error('no sub');
      socket.data.userId = String(claims.sub);
      next();
    } catch (e) {
      next(new Error('Authentication failed'));
    }
  });

  nsp.on('connection', (client) => {
    const userId = client.data.userId;
    client.join(`user:${userId}`);
    if (VERBOSE) log(`User ${userId} connected (socket: ${client.id})`);
    client.emit('connected', { message: 'Connected to notification service', userId });
    client.on('mark_read', (data, ack) => {
      if (typeof ack === 'function') ack({ success: true, notificationId: data?.notificationId });
    });
    client.on('get_unread_count', (ack) => { if (typeof ack === 'function') ack({ unreadCount: 0 }); });
    if (VERBOSE) client.on('disconnect', () => log(`User ${userId} disconnected (socket: ${client.id})`));
  });

  server.listen(PORT, HOST, () => log(`listening on ${HOST}:${PORT} namespace ${NSP} table ${TABLE}`));
  const stop = () => { server.close(); io.close(); pool.end().catch(() => {}); setTimeout(() => process.exit(0), 500).unref(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => { console.error(e); process.exit(1); });

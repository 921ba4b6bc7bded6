// A private Herald cluster for the browser tests: two gateway nodes + HAProxy, real
// PostgreSQL and Redis, on free ports, with their own database and Redis prefix, so it never
// collides with a developer's `scripts/cluster.sh up`. Everything is torn down by stop(),
// and — as a last resort — on process exit / SIGINT / SIGTERM.
//
// Standalone: `node web/e2e/cluster.mjs` starts it, prints the URLs and waits for Ctrl-C.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '..', '..');
const BIN = process.env.HERALD_BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'release', 'herald');
const STATIC_DIR = join(ROOT, 'web', 'demo', 'dist');
const PG = ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-XtAq'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[cluster]', ...a);

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function have(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function waitHttp(url, timeoutMs, isAlive) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (isAlive && !isAlive()) throw new Error(`process for ${url} exited during startup`);
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = String(e.cause?.code || e.message);
    }
    await sleep(150);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms (${last})`);
}

const live = new Set(); // child processes to kill on exit
let exitHooked = false;
const cleanups = [];
function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  const hard = () => {
    for (const c of live) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {}
    }
    for (const f of cleanups.splice(0)) {
      try {
        f();
      } catch {}
    }
  };
  process.on('exit', hard);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      hard();
      process.exit(130);
    });
  }
}

/**
 * Options: `build` (cargo build first; default when the binary is missing) and `staticDir`
 * (what the nodes serve at `/`; default the demo's `web/demo/dist`; web/consumer serves the
 * consumer app it built) and `env` (extra HERALD_* settings for both nodes).
 */
export async function startCluster({ build = !existsSync(BIN), staticDir = STATIC_DIR, env: extraEnv = {} } = {}) {
  hookExit();
  if (build) {
    log('cargo build --release -p herald-gateway --features lab');
    execFileSync('cargo', ['build', '--release', '-p', 'herald-gateway', '--features', 'lab'], { cwd: ROOT, stdio: 'inherit' });
  }
  if (!existsSync(BIN)) throw new Error(`missing ${BIN} (cargo build --release -p herald-gateway --features lab)`);
  if (!existsSync(join(staticDir, 'index.html'))) throw new Error(`missing ${staticDir}/index.html (npm run build in web/)`);
  if (!have('haproxy')) {
    log('installing haproxy (apt)');
    execFileSync('sh', ['-c', 'apt-get install -y haproxy >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y haproxy >/dev/null)'], {
      stdio: 'inherit',
    });
  }

  const tag = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'herald-e2e-'));
  // `herald_test_` prefix: scripts/test.sh's cleanup stage drops leftovers of killed runs.
  const db = `herald_test_web_${tag}`;
  const redisPrefix = `herald-e2e-${tag}:`;
  const [lbPort, aPort, bPort] = [await freePort(), await freePort(), await freePort()];
  const lbUrl = `http://127.0.0.1:${lbPort}`;
  const nodeUrls = { 'node-a': `http://127.0.0.1:${aPort}`, 'node-b': `http://127.0.0.1:${bPort}` };
  const ports = { 'node-a': aPort, 'node-b': bPort };
  const origins = [lbPort, aPort, bPort].flatMap((p) => [`http://127.0.0.1:${p}`, `http://localhost:${p}`]).join(',');

  execFileSync('psql', [...PG, '-c', `create database "${db}"`]);
  const dropDb = () => {
    try {
      execFileSync('psql', [...PG, '-c', `drop database if exists "${db}" with (force)`], { stdio: 'ignore' });
    } catch {}
  };
  const dropRedis = () => {
    try {
      execFileSync('sh', ['-c', `redis-cli -h 127.0.0.1 --scan --pattern '${redisPrefix}*' | xargs -r redis-cli -h 127.0.0.1 del >/dev/null`], {
        stdio: 'ignore',
      });
    } catch {}
  };
  cleanups.push(dropDb, dropRedis, () => rmSync(dir, { recursive: true, force: true }));

  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_'))),
    HERALD_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${db}`,
    HERALD_REDIS_URL: 'redis://127.0.0.1:6379',
    HERALD_REDIS_PREFIX: redisPrefix,
    HERALD_SERVICE_KEYS: `sk-e2e-${randomBytes(12).toString('hex')}`,
    HERALD_JWT_HS256_SECRET: randomBytes(32).toString('hex'),
    HERALD_ALLOWED_ORIGINS: origins,
    HERALD_DEV_ENDPOINTS: 'true',
    // The browser tests drive the nodes from loopback faster than a person clicks.
    HERALD_LIMIT_EXEMPT: '127.0.0.0/8',
    HERALD_JWT_AUDIENCE: 'herald-e2e',
    HERALD_JWT_ISSUER: 'herald-e2e',
    HERALD_USER_API_RATE_PER_SEC: '100000',
    HERALD_USER_API_RATE_BURST: '100000',
    HERALD_BROADCAST_RATE_PER_SEC: '1000',
    HERALD_BROADCAST_RATE_BURST: '1000',
    HERALD_STATIC_DIR: staticDir,
    HERALD_MIGRATE_ON_START: 'false',
    HERALD_DRAIN_GRACE_MS: '1000',
    HERALD_WORKERS: '1',
    HERALD_LOG: process.env.HERALD_LOG || 'info',
    // A caller's settings win (conformance/socketio: the seed's tokens, without aud/iss).
    ...extraEnv,
  };
  execFileSync(BIN, ['migrate'], { env: { ...env, HERALD_NODE_ID: 'migrate', HERALD_LISTEN: '127.0.0.1:0', HERALD_ADMIN_LISTEN: 'off' }, stdio: 'pipe' });

  const procs = {};
  const logs = {};
  const startNode = async (name) => {
    logs[name] = join(dir, `${name}.log`);
    const out = openSync(logs[name], 'a');
    const child = spawn(BIN, ['serve'], {
      env: { ...env, HERALD_NODE_ID: name, HERALD_LISTEN: `127.0.0.1:${ports[name]}`, HERALD_ADMIN_LISTEN: '127.0.0.1:0' },
      stdio: ['ignore', out, out],
    });
    live.add(child);
    child.on('exit', () => live.delete(child));
    procs[name] = child;
    await waitHttp(`${nodeUrls[name]}/readyz`, 30_000, () => child.exitCode === null && child.signalCode === null);
    return child.pid;
  };

  const cfg = readFileSync(join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8')
    .replace(/127\.0\.0\.1:8080\b/g, `127.0.0.1:${lbPort}`)
    .replace(/127\.0\.0\.1:8081\b/g, `127.0.0.1:${aPort}`)
    .replace(/127\.0\.0\.1:8082\b/g, `127.0.0.1:${bPort}`)
    // Faster failure detection for the tests (a killed node leaves rotation within ~1 s).
    .replace(/default-server inter \S+ fastinter \S+ downinter \S+ fall \d+ rise \d+/, 'default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 1');
  const cfgPath = join(dir, 'haproxy.cfg');
  writeFileSync(cfgPath, cfg);

  try {
    await Promise.all([startNode('node-a'), startNode('node-b')]);
    logs.haproxy = join(dir, 'haproxy.log');
    const hout = openSync(logs.haproxy, 'a');
    const hp = spawn('haproxy', ['-db', '-f', cfgPath], { stdio: ['ignore', hout, hout] });
    live.add(hp);
    hp.on('exit', () => live.delete(hp));
    procs.haproxy = hp;
    await waitHttp(`${lbUrl}/readyz`, 20_000, () => hp.exitCode === null);
  } catch (e) {
    for (const n of Object.keys(logs)) {
      try {
        log(`--- ${n} log tail ---\n` + readFileSync(logs[n], 'utf8').split('\n').slice(-25).join('\n'));
      } catch {}
    }
    await stopAll();
    throw e;
  }

  async function stopAll() {
    const all = Object.values(procs).filter((c) => c && c.exitCode === null && c.signalCode === null);
    for (const c of all) {
      try {
        c.kill('SIGTERM');
      } catch {}
    }
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline && all.some((c) => c.exitCode === null && c.signalCode === null)) await sleep(100);
    for (const c of all) {
      if (c.exitCode === null && c.signalCode === null) {
        try {
          c.kill('SIGKILL');
        } catch {}
      }
    }
    for (const f of cleanups.splice(0)) {
      try {
        f();
      } catch {}
    }
  }

  log(`up: lb ${lbUrl}, node-a ${nodeUrls['node-a']}, node-b ${nodeUrls['node-b']}, db ${db}, logs ${dir}`);
  return {
    lbUrl,
    nodeUrls,
    db,
    dir,
    logs,
    /** A service key for the HTTP publish API (`POST /v1/notifications`). */
    serviceKey: env.HERALD_SERVICE_KEYS,
    pid: (name) => procs[name]?.pid,
    /** SIGKILL a node (no drain) and wait until it is gone. */
    async killNode(name) {
      const c = procs[name];
      c.kill('SIGKILL');
      const deadline = Date.now() + 5000;
      while (c.exitCode === null && c.signalCode === null && Date.now() < deadline) await sleep(50);
    },
    startNode,
    /** Publish through a node's dev endpoint. */
    async publish(baseUrl, body) {
      const r = await fetch(`${baseUrl}/dev/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      const j = await r.json();
      if (r.status !== 201) throw new Error(`publish: HTTP ${r.status} ${JSON.stringify(j)}`);
      return j;
    },
    logTail(name, lines = 30) {
      try {
        return readFileSync(logs[name], 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
    stop: stopAll,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const c = await startCluster();
  console.log(JSON.stringify({ lb: c.lbUrl, nodes: c.nodeUrls, db: c.db, logs: c.dir }, null, 2));
  console.log('Ctrl-C to stop');
  process.on('SIGINT', async () => {
    await c.stop();
    process.exit(0);
  });
  await new Promise(() => {});
}

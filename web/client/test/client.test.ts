import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, backoffCeiling, backoffDelay, isTerminalClose, type HeraldClientOptions } from '../src';
import { FakeSocket, fakeFetch, flush, notif, page } from './fakes';

let online = true;
function make(over: Partial<HeraldClientOptions> = {}, routes: Parameters<typeof fakeFetch>[0] = {}) {
  const f = fakeFetch({ '/v1/notifications?': () => page([]), ...routes });
  let tokens = 0;
  const getToken = vi.fn(async () => `tok-${++tokens}`);
  const listeners: Record<string, () => void> = {};
  const client = new HeraldClient({
    url: 'ws://gw.test/v1/ws',
    getToken,
    WebSocket: FakeSocket,
    fetch: f.fn,
    random: () => 1 - 1e-9, // worst-case jitter: delay ~= ceiling
    crossTab: false,
    env: {
      addEventListener: ((ev: string, cb: () => void) => (listeners[ev] = cb)) as any,
      removeEventListener: (() => undefined) as any,
      isOnline: () => online,
    },
    ...over,
  });
  return { client, getToken, fetch: f, listeners };
}

async function connectAndOpen(client: HeraldClient, connected: Record<string, unknown> = {}) {
  client.connect();
  await flush();
  const ws = FakeSocket.last();
  ws.open();
  ws.connected(connected);
  await flush();
  return ws;
}

beforeEach(() => {
  FakeSocket.all = [];
  online = true;
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('backoff math', () => {
  it('doubles from 500 ms and caps at 30 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffCeiling(a))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(backoffCeiling(10_000)).toBe(30_000);
  });
  it('uses full jitter: uniform in [0, ceiling)', () => {
    expect(backoffDelay(3, {}, () => 0)).toBe(0);
    expect(backoffDelay(3, {}, () => 0.5)).toBe(2000);
    expect(backoffDelay(3, {}, () => 0.999999)).toBe(3999);
    expect(backoffDelay(2, { baseMs: 100, capMs: 250 }, () => 0.5)).toBe(125);
  });
  it('classifies close codes', () => {
    for (const c of [4000, 4001, 4003, 4005, 4099, 1003, 1009]) expect(isTerminalClose(c)).toBe(true);
    for (const c of [1000, 1001, 1006, 1011, 4100, 4101, 4102, 4103, 4104, 4105, 4106]) expect(isTerminalClose(c)).toBe(false);
  });
});

describe('connect and auth', () => {
  it('sends auth as the first message with a fresh token and no last_seq on first load', async () => {
    const { client, getToken } = make();
    const ws = await connectAndOpen(client);
    expect(ws.url).toBe('ws://gw.test/v1/ws');
    expect(ws.sent[0]).toEqual({ type: 'auth', token: 'tok-1', last_seq: null });
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(client.state).toBe('open');
  });

  it('fetches the newest page over HTTP on first load with the Bearer token', async () => {
    const { client, fetch } = make({}, { '/v1/notifications?': () => page([notif(2), notif(1)]) });
    await connectAndOpen(client, { unread_count: 2, version: 3 });
    await flush();
    const call = fetch.calls.find((c) => c.url.includes('/v1/notifications?'))!;
    expect(call.url).toBe('http://gw.test/v1/notifications?limit=20');
    expect((call.init.headers as Record<string, string>).Authorization).toBe('Bearer tok-1');
    expect(client.notifications.map((n) => n.seq)).toEqual([2, 1]);
  });
});

describe('reconnect', () => {
  it('reconnects with exponential backoff, a fresh token and last_seq = highest seq held', async () => {
    const { client, getToken } = make();
    const ws1 = await connectAndOpen(client);
    ws1.push({ type: 'notification', notification: notif(7), unread_count: 1, version: 2 });
    ws1.push({ type: 'notification', notification: notif(9), unread_count: 2, version: 3 });
    ws1.serverClose(1006);
    expect(client.state).toBe('reconnecting');
    // attempt 0: < 500 ms
    await vi.advanceTimersByTimeAsync(499);
    await flush();
    expect(FakeSocket.all.length).toBe(2);
    const ws2 = FakeSocket.last();
    ws2.open();
    expect(ws2.sent[0]).toEqual({ type: 'auth', token: 'tok-2', last_seq: 9 });
    expect(getToken).toHaveBeenCalledTimes(2);
    // Failing again without ever connecting: the ceiling doubles.
    ws2.serverClose(1006);
    await vi.advanceTimersByTimeAsync(998);
    expect(FakeSocket.all.length).toBe(2);
    await vi.advanceTimersByTimeAsync(2);
    await flush();
    expect(FakeSocket.all.length).toBe(3);
    FakeSocket.last().serverClose(1006);
    await vi.advanceTimersByTimeAsync(1998); // attempt 2: ceiling 2000 ms
    expect(FakeSocket.all.length).toBe(3);
    await vi.advanceTimersByTimeAsync(2);
    await flush();
    expect(FakeSocket.all.length).toBe(4);
  });

  it.each([4100, 4101, 4102, 4103, 4104, 4106, 1011])('reconnects after close code %i', async (code) => {
    const { client } = make();
    const ws = await connectAndOpen(client);
    ws.serverClose(code);
    expect(client.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(600);
    await flush();
    expect(FakeSocket.all.length).toBe(2);
  });

  it.each([4000, 4001, 4003, 4005])('stops and surfaces an error on terminal close %i', async (code) => {
    const { client } = make();
    const errors: unknown[] = [];
    client.on('error', (e) => errors.push(e));
    const ws = await connectAndOpen(client);
    ws.serverClose(code, 'unauthorized');
    expect(client.state).toBe('error');
    expect(client.error).toEqual({ code, message: 'unauthorized' });
    expect(errors).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(FakeSocket.all.length).toBe(1);
    // retry() starts again with a new token
    client.retry();
    await flush();
    expect(FakeSocket.all.length).toBe(2);
  });

  it('honours a reconnect hint: reconnects within after_ms, before the 4105 close', async () => {
    const { client } = make({ random: () => 0.5 });
    const ws = await connectAndOpen(client);
    ws.push({ type: 'notification', notification: notif(3), unread_count: 1, version: 2 });
    ws.push({ type: 'reconnect', reason: 'draining', after_ms: 4000 });
    await vi.advanceTimersByTimeAsync(1999);
    expect(FakeSocket.all.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await flush();
    expect(ws.closedWith).toBe(1000);
    expect(FakeSocket.all.length).toBe(2);
    FakeSocket.last().open();
    expect(FakeSocket.last().sent[0]).toMatchObject({ type: 'auth', last_seq: 3 });
  });

  it('pauses while offline and resumes on online', async () => {
    const { client, listeners } = make();
    const ws = await connectAndOpen(client);
    online = false;
    listeners.offline!();
    expect(client.state).toBe('offline');
    expect(ws.closedWith).toBe(1000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeSocket.all.length).toBe(1);
    online = true;
    listeners.online!();
    await flush();
    expect(FakeSocket.all.length).toBe(2);
    expect(client.state).toBe('reconnecting');
  });

  it('does not connect while navigator reports offline', async () => {
    online = false;
    const { client } = make();
    client.connect();
    await flush();
    expect(client.state).toBe('offline');
    expect(FakeSocket.all.length).toBe(0);
  });

  it('refreshes the token on token_expiring', async () => {
    const { client, getToken } = make();
    const ws = await connectAndOpen(client);
    ws.push({ type: 'token_expiring', expires_at: 2_000_000_000 });
    await flush();
    expect(getToken).toHaveBeenCalledTimes(2);
    const refresh = ws.sent.find((m) => m.type === 'refresh');
    expect(refresh).toMatchObject({ type: 'refresh', token: 'tok-2' });
    expect(typeof refresh.rid).toBe('number');
    ws.push({ type: 'ack', rid: refresh.rid, result: { expires_at: 2_000_003_600 } });
  });
});

describe('state', () => {
  it('de-duplicates by id and keeps seq desc order', async () => {
    const { client } = make();
    const seen: number[] = [];
    client.on('notification', (n) => seen.push(n.seq));
    const ws = await connectAndOpen(client);
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 2 });
    ws.push({ type: 'notification', notification: notif(3), unread_count: 3, version: 3 });
    ws.push({ type: 'notification', notification: notif(2), unread_count: 3, version: 3 });
    ws.push({ type: 'notifications:batch', notifications: [notif(3), notif(4)], complete: true, unread_count: null, version: null });
    expect(client.notifications.map((n) => n.seq)).toEqual([4, 3, 2, 1]);
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(client.lastSeq).toBe(4);
  });

  it('applies unread_count only from events with a higher version', async () => {
    const { client } = make();
    const ws = await connectAndOpen(client, { unread_count: 5, version: 10 });
    expect(client.unreadCount).toBe(5);
    ws.push({ type: 'notification', notification: notif(1), unread_count: 9, version: 8 }); // stale
    expect(client.unreadCount).toBe(5);
    ws.push({ type: 'read', ids: [], up_to_seq: null, read_at: '2026-01-01T00:00:00Z', unread_count: 4, version: 12 });
    expect(client.unreadCount).toBe(4);
    ws.push({ type: 'notification', notification: notif(2), unread_count: 6, version: 11 }); // older than 12
    expect(client.unreadCount).toBe(4);
    ws.push({ type: 'notifications:batch', notifications: [], complete: true, unread_count: 7, version: 13 });
    expect(client.unreadCount).toBe(7);
  });

  it('applies read events (ids and up_to_seq)', async () => {
    const { client } = make();
    const ws = await connectAndOpen(client);
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2), notif(3)], complete: true, unread_count: 3, version: 4 });
    ws.push({ type: 'read', ids: [notif(3).id], up_to_seq: null, read_at: '2026-01-01T00:00:00Z', unread_count: 2, version: 5 });
    expect(client.notifications.map((n) => !!n.read_at)).toEqual([true, false, false]);
    ws.push({ type: 'read', ids: [], up_to_seq: 2, read_at: '2026-01-01T00:00:01Z', unread_count: 0, version: 6 });
    expect(client.notifications.every((n) => n.read_at)).toBe(true);
    expect(client.unreadCount).toBe(0);
  });

  it('handles resync by refetching the newest page over HTTP', async () => {
    const fresh = [notif(1500), notif(1499)];
    const { client, fetch } = make({}, { '/v1/notifications?': () => page(fresh, { next_cursor: 'c1' }) });
    const ws = await connectAndOpen(client);
    await flush();
    ws.push({ type: 'notification', notification: notif(5), unread_count: 1, version: 2 });
    const before = fetch.calls.length;
    ws.push({ type: 'resync', reason: 'gap_too_large', latest_seq: 1500 });
    await flush();
    expect(fetch.calls.length).toBe(before + 1);
    expect(fetch.calls[fetch.calls.length - 1]!.url).toBe('http://gw.test/v1/notifications?limit=20');
    expect(client.notifications.map((n) => n.seq)).toEqual([1500, 1499]);
    expect(client.lastSeq).toBe(1500);
    expect(client.hasMore).toBe(true);
  });

  it('cursor_ahead drops the local list and adopts latest_seq as the cursor', async () => {
    const { client } = make({}, { '/v1/notifications?': () => page([]) });
    const ws = await connectAndOpen(client);
    ws.push({ type: 'notification', notification: notif(50), unread_count: 1, version: 2 });
    ws.push({ type: 'resync', reason: 'cursor_ahead', latest_seq: 3 });
    await flush();
    expect(client.notifications).toEqual([]);
    expect(client.lastSeq).toBe(3);
  });

  it('loadMore paginates with the before cursor', async () => {
    let n = 0;
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications?': () => (n++ === 0 ? page([notif(40), notif(39)], { next_cursor: 'CUR' }) : page([notif(38)], { next_cursor: null })),
      },
    );
    await connectAndOpen(client);
    await flush();
    expect(client.hasMore).toBe(true);
    await client.loadMore();
    expect(fetch.calls[fetch.calls.length - 1]!.url).toBe('http://gw.test/v1/notifications?limit=20&before=CUR');
    expect(client.notifications.map((x) => x.seq)).toEqual([40, 39, 38]);
    expect(client.hasMore).toBe(false);
  });
});

describe('commands', () => {
  it('markRead is optimistic, sends mark_read with a rid and applies the ack', async () => {
    const { client } = make();
    const ws = await connectAndOpen(client, { unread_count: 2, version: 3 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    const p = client.markRead(notif(2).id);
    expect(client.unreadCount).toBe(1);
    expect(client.notifications[0]!.read_at).not.toBeNull();
    const cmd = ws.sent.find((m) => m.type === 'mark_read');
    expect(cmd).toEqual({ type: 'mark_read', id: notif(2).id, rid: expect.any(Number) });
    ws.push({
      type: 'ack',
      rid: cmd.rid,
      result: { id: notif(2).id, seq: 2, read_at: '2026-01-01T00:00:00Z', changed: true, unread_count: 1, version: 4 },
    });
    await p;
    expect(client.notifications[0]!.read_at).toBe('2026-01-01T00:00:00Z');
    expect(client.unreadCount).toBe(1);
  });

  it('markRead rolls back on an error answer', async () => {
    const { client } = make({}, { '/v1/notifications/unread-count': () => ({ unread_count: 1, latest_seq: 1, version: 3 }) });
    const ws = await connectAndOpen(client, { unread_count: 1, version: 2 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1)], complete: true, unread_count: 1, version: 2 });
    const p = client.markRead(notif(1).id);
    const cmd = ws.sent.find((m) => m.type === 'mark_read');
    ws.push({ type: 'error', rid: cmd.rid, code: 'not_found', message: 'no such notification' });
    await expect(p).rejects.toMatchObject({ code: 'not_found' });
    expect(client.notifications[0]!.read_at).toBeNull();
    expect(client.unreadCount).toBe(1);
  });

  it('markRead uses HTTP when not connected', async () => {
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications?': () => page([notif(1)]),
        [`/v1/notifications/${notif(1).id}/read`]: () => ({
          id: notif(1).id,
          seq: 1,
          read_at: '2026-01-01T00:00:00Z',
          changed: true,
          unread_count: 0,
          version: 9,
        }),
      },
    );
    const ws = await connectAndOpen(client);
    await flush();
    ws.serverClose(1006);
    await client.markRead(notif(1).id);
    const call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.url).toBe(`http://gw.test/v1/notifications/${notif(1).id}/read`);
    expect(call.init.method).toBe('POST');
    expect(client.unreadCount).toBe(0);
  });

  it('markAllRead marks everything up to the highest seq held', async () => {
    const { client } = make();
    const ws = await connectAndOpen(client);
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    const p = client.markAllRead();
    expect(client.unreadCount).toBe(0);
    const cmd = ws.sent.find((m) => m.type === 'mark_all_read');
    expect(cmd).toMatchObject({ type: 'mark_all_read', up_to_seq: 2 });
    ws.push({ type: 'ack', rid: cmd.rid, result: { marked: 2, up_to_seq: 2, read_at: '2026-01-01T00:00:00Z', unread_count: 0, version: 4 } });
    await p;
    expect(client.notifications.every((n) => n.read_at)).toBe(true);
  });
});

describe('paging after a large catch-up', () => {
  it('Load older skips pages the client already holds', async () => {
    const held = Array.from({ length: 150 }, (_, i) => notif(200 - i)); // seq 200..51 from catch-up
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications?': (url) => {
          const u = new URL(url);
          const before = Number(u.searchParams.get('before') ?? 201);
          const limit = Number(u.searchParams.get('limit'));
          const rows = [];
          for (let seq = before - 1; seq >= 1 && rows.length < limit; seq--) rows.push(notif(seq));
          const last = rows[rows.length - 1]!.seq;
          return page(rows, { next_cursor: last > 1 ? String(last) : null, latest_seq: 200 });
        },
      },
    );
    const ws = await connectAndOpen(client, { latest_seq: 200 });
    ws.push({ type: 'notifications:batch', notifications: held.slice().reverse(), complete: true, unread_count: 200, version: 3 });
    await flush();
    const calls = fetch.calls.length;
    await client.loadMore();
    expect(client.notifications.length).toBeGreaterThan(150);
    expect(client.notifications.at(-1)!.seq).toBeLessThan(51);
    expect(fetch.calls.length - calls).toBeLessThanOrEqual(3);
  });
});

describe('failed optimistic changes', () => {
  const offlineFail = () => {
    throw new TypeError('Failed to fetch');
  };

  it('mark all read while offline: both HTTP calls fail, the change is rolled back and reported', async () => {
    const { client, fetch, listeners } = make(
      {},
      {
        '/v1/notifications?': () => page([notif(1), notif(2), notif(3)]),
        '/v1/notifications/read-all': offlineFail,
        '/v1/notifications/unread-count': offlineFail,
      },
    );
    await connectAndOpen(client, { unread_count: 3, version: 7, latest_seq: 3 });
    await flush();
    expect(client.unreadCount).toBe(3);
    online = false;
    listeners.offline!();
    expect(client.state).toBe('offline');
    const p = client.markAllRead();
    expect(client.unreadCount).toBe(0); // optimistic
    await expect(p).rejects.toMatchObject({ code: 'network' });
    await flush();
    expect(fetch.calls.some((c) => c.url.endsWith('/v1/notifications/read-all'))).toBe(true);
    expect(fetch.calls.some((c) => c.url.endsWith('/v1/notifications/unread-count'))).toBe(true);
    expect(client.unreadCount).toBe(3);
    expect(client.notifications.every((n) => n.read_at === null)).toBe(true);
    expect(client.getSnapshot().actionError).toMatchObject({ action: 'mark_all_read', code: 'network' });
  });

  it('a rollback does not undo what a read event established meanwhile', async () => {
    const { client } = make({}, { '/v1/notifications?': () => page([notif(1), notif(2)]) });
    const ws = await connectAndOpen(client, { unread_count: 2, version: 3, latest_seq: 2 });
    await flush();
    const p = client.markAllRead();
    const cmd = ws.sent.find((m) => m.type === 'mark_all_read');
    ws.push({ type: 'read', ids: [notif(1).id], up_to_seq: null, read_at: '2026-01-01T00:00:00Z', unread_count: 1, version: 4 });
    ws.push({ type: 'error', rid: cmd.rid, code: 'internal', message: 'boom' });
    await expect(p).rejects.toMatchObject({ code: 'internal' });
    expect(client.notifications.find((n) => n.seq === 1)!.read_at).toBe('2026-01-01T00:00:00Z');
    expect(client.notifications.find((n) => n.seq === 2)!.read_at).toBeNull();
    expect(client.unreadCount).toBe(1);
  });

  it('a failed single mark-read is rolled back and reported; a later success clears the report', async () => {
    const { client } = make({}, { '/v1/notifications?': () => page([notif(1), notif(2)]) });
    const ws = await connectAndOpen(client, { unread_count: 2, version: 3, latest_seq: 2 });
    await flush();
    const p = client.markRead(notif(1).id);
    let cmd = ws.sent.find((m) => m.type === 'mark_read');
    ws.push({ type: 'error', rid: cmd.rid, code: 'internal', message: 'database unavailable' });
    await expect(p).rejects.toMatchObject({ code: 'internal' });
    expect(client.unreadCount).toBe(2);
    expect(client.getSnapshot().actionError).toEqual({ action: 'mark_read', code: 'internal', message: 'database unavailable' });
    const q = client.markRead(notif(1).id);
    cmd = ws.sent.filter((m) => m.type === 'mark_read')[1];
    ws.push({
      type: 'ack',
      rid: cmd.rid,
      result: { id: notif(1).id, seq: 1, read_at: '2026-01-01T00:00:00Z', changed: true, unread_count: 1, version: 4 },
    });
    await q;
    expect(client.getSnapshot().actionError).toBeNull();
  });

  it('a re-read count at an unchanged version replaces an optimistic count', async () => {
    const { client } = make(
      {},
      {
        '/v1/notifications?': () => page([notif(1), notif(2)]),
        '/v1/notifications/unread-count': () => ({ unread_count: 2, latest_seq: 2, version: 3 }),
      },
    );
    const ws = await connectAndOpen(client, { unread_count: 2, version: 3, latest_seq: 2 });
    await flush();
    void client.markRead(notif(2).id).catch(() => undefined); // no answer yet
    expect(client.unreadCount).toBe(1);
    // The server has not applied it: at version 3 the count is still 2, and that is the truth.
    await client.refreshUnreadCount();
    expect(client.unreadCount).toBe(2);
    const cmd = ws.sent.find((m) => m.type === 'mark_read');
    ws.push({
      type: 'ack',
      rid: cmd.rid,
      result: { id: notif(2).id, seq: 2, read_at: '2026-01-01T00:00:00Z', changed: true, unread_count: 1, version: 4 },
    });
    await flush();
    expect(client.unreadCount).toBe(1);
  });

  it('on reconnect adopts the server count even at a version already seen, and re-reads read state after a failure', async () => {
    let serverPage = page([notif(1), notif(2), notif(3)]);
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications?': () => serverPage,
        '/v1/notifications/read-all': () => {
          throw new TypeError('Failed to fetch');
        },
        '/v1/notifications/unread-count': () => {
          throw new TypeError('Failed to fetch');
        },
      },
    );
    let ws = await connectAndOpen(client, { unread_count: 3, version: 7, latest_seq: 3 });
    await flush();
    ws.serverClose(1006);
    await expect(client.markAllRead()).rejects.toMatchObject({ code: 'network' });
    // Meanwhile another device read #3 (the server is at version 8, 2 unread).
    serverPage = page([notif(1), notif(2), notif(3, { read_at: '2026-01-01T00:00:00Z' })]);
    const before = fetch.calls.length;
    await vi.advanceTimersByTimeAsync(1_000);
    ws = FakeSocket.last();
    ws.open();
    ws.connected({ unread_count: 2, version: 7, latest_seq: 3 });
    await flush();
    expect(client.unreadCount).toBe(2);
    expect(fetch.calls.slice(before).some((c) => c.url.includes('/v1/notifications?limit='))).toBe(true);
    expect(client.notifications.find((n) => n.seq === 3)!.read_at).toBe('2026-01-01T00:00:00Z');
  });
});

describe('reads made elsewhere while away', () => {
  it('on reconnect re-reads the held rows when the server count/version moved, so badge and list agree', async () => {
    let serverPage = page([notif(1), notif(2), notif(3)]);
    const { client } = make({}, { '/v1/notifications?': () => serverPage });
    let ws = await connectAndOpen(client, { unread_count: 3, version: 7, latest_seq: 3 });
    await flush();
    expect(client.notifications.filter((n) => !n.read_at)).toHaveLength(3);
    ws.serverClose(1006);
    // Meanwhile another session marked everything read (no failed action here).
    const readAt = '2026-01-01T00:00:00Z';
    serverPage = page([notif(1, { read_at: readAt }), notif(2, { read_at: readAt }), notif(3, { read_at: readAt })]);
    await vi.advanceTimersByTimeAsync(1_000);
    ws = FakeSocket.last();
    ws.open();
    ws.connected({ unread_count: 0, version: 8, latest_seq: 3 });
    ws.push({ type: 'notifications:batch', notifications: [], complete: true, unread_count: 0, version: 8 });
    await flush();
    expect(client.unreadCount).toBe(0);
    expect(client.notifications.filter((n) => !n.read_at)).toEqual([]);
  });
});

describe('errors the UI shows', () => {
  it('a failing token provider sets the error', async () => {
    const { client } = make({ getToken: async () => Promise.reject(new Error('session expired')) });
    client.connect();
    await flush();
    expect(client.getSnapshot().error).toEqual({ code: 'token_provider', message: 'token provider failed: session expired' });
    expect(client.state).toBe('reconnecting');
  });

  it('a socket that closes before connected sets the error; connected clears it', async () => {
    const { client } = make();
    client.connect();
    await flush();
    FakeSocket.last().serverClose(1006);
    expect(client.getSnapshot().error).toMatchObject({ code: 1006 });
    expect(client.getSnapshot().error!.message).toContain('could not connect');
    await vi.advanceTimersByTimeAsync(1_000);
    const ws = FakeSocket.last();
    ws.open();
    ws.connected();
    await flush();
    expect(client.getSnapshot().error).toBeNull();
  });

  it('a terminal 4001 keeps the server reason', async () => {
    const { client } = make();
    client.connect();
    await flush();
    FakeSocket.last().serverClose(4001, 'unauthorized: bad signature');
    expect(client.state).toBe('error');
    expect(client.getSnapshot().error).toEqual({ code: 4001, message: 'unauthorized: bad signature' });
  });

  it('a failed first page load sets the error; retry() loads it again and clears it', async () => {
    let fail = true;
    const { client } = make(
      {},
      {
        '/v1/notifications?': () => {
          if (fail) throw new TypeError('Failed to fetch');
          return page([notif(1)]);
        },
      },
    );
    await connectAndOpen(client);
    await flush();
    expect(client.state).toBe('open');
    expect(client.getSnapshot().error).toMatchObject({ code: 'network' });
    fail = false;
    client.retry();
    await flush();
    expect(client.getSnapshot().error).toBeNull();
    expect(client.notifications).toHaveLength(1);
  });

  it('an HTTP error status sets the error', async () => {
    const { client } = make({ fetch: (async () => ({ ok: false, status: 401, text: async () => JSON.stringify({ code: 'unauthorized', message: 'bad token' }) })) as any });
    await connectAndOpen(client);
    await flush();
    expect(client.getSnapshot().error).toEqual({ code: 'unauthorized', message: 'bad token' });
  });

  it('retry() while waiting to reconnect connects at once', async () => {
    const { client } = make();
    client.connect();
    await flush();
    FakeSocket.last().serverClose(1006);
    await vi.advanceTimersByTimeAsync(1_000);
    FakeSocket.last().serverClose(1006); // backoff now ~1 s
    const n = FakeSocket.all.length;
    client.retry();
    await flush();
    expect(FakeSocket.all.length).toBe(n + 1);
  });

  it('a failed Load older is reported, not swallowed', async () => {
    const { client } = make(
      {},
      {
        '/v1/notifications?': (url) => {
          if (url.includes('before=')) throw new TypeError('Failed to fetch');
          return page([notif(2)], { next_cursor: 'c1' });
        },
      },
    );
    await connectAndOpen(client);
    await flush();
    await expect(client.loadMore()).rejects.toMatchObject({ code: 'network' });
    expect(client.getSnapshot().actionError).toMatchObject({ action: 'load_more', code: 'network' });
    expect(client.getSnapshot().error).toBeNull();
    expect(client.hasMore).toBe(true);
  });
});

describe('toasts', () => {
  it('emits no toast while the inbox panel is open', async () => {
    const { client } = make();
    const toasts: number[] = [];
    client.on('toast', (n) => toasts.push(n.seq));
    const ws = await connectAndOpen(client);
    await flush();
    ws.push({ type: 'notifications:batch', notifications: [], complete: true, unread_count: 0, version: 2 });
    client.setInboxOpen(true);
    ws.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 3 });
    client.setInboxOpen(false);
    ws.push({ type: 'notification', notification: notif(2), unread_count: 2, version: 4 });
    expect(toasts).toEqual([2]);
  });

  it('the cross-tab claim goes to the better-placed tab (tabRank)', async () => {
    const members: any[] = [];
    const channelFactory = () => {
      const ch: any = {
        onmessage: null,
        postMessage(msg: unknown) {
          for (const m of members) if (m !== ch) setTimeout(() => m.onmessage?.({ data: msg }), 5);
        },
        close() {},
      };
      members.push(ch);
      return ch;
    };
    const hidden = make({ crossTab: true, channelFactory, userId: 'alice', tabRank: () => 0 }).client;
    const focused = make({ crossTab: true, channelFactory, userId: 'alice', tabRank: () => 2 }).client;
    const shown: string[] = [];
    hidden.on('toast', () => shown.push('hidden'));
    focused.on('toast', () => shown.push('focused'));
    const wsH = await connectAndOpen(hidden);
    const wsF = await connectAndOpen(focused);
    for (const ws of [wsH, wsF]) ws.push({ type: 'notifications:batch', notifications: [], complete: true, unread_count: 0, version: 2 });
    wsH.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 3 });
    await vi.advanceTimersByTimeAsync(30);
    wsF.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 3 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(shown).toEqual(['focused']);
  });

  it('a panel left open in a hidden tab does not take toasts from the visible, focused tab (default tabRank)', async () => {
    const members: any[] = [];
    const channelFactory = () => {
      const ch: any = {
        onmessage: null,
        postMessage(msg: unknown) {
          for (const m of members) if (m !== ch) setTimeout(() => m.onmessage?.({ data: msg }), 5);
        },
        close() {},
      };
      members.push(ch);
      return ch;
    };
    let visibility: DocumentVisibilityState = 'hidden';
    let focus = false;
    vi.spyOn(document, 'visibilityState', 'get').mockImplementation(() => visibility);
    vi.spyOn(document, 'hasFocus').mockImplementation(() => focus);
    const hiddenWithPanel = make({ crossTab: true, channelFactory, userId: 'alice' }).client;
    const focused = make({ crossTab: true, channelFactory, userId: 'alice' }).client;
    const shown: string[] = [];
    hiddenWithPanel.on('toast', () => shown.push('hidden'));
    focused.on('toast', () => shown.push('focused'));
    const wsH = await connectAndOpen(hiddenWithPanel);
    const wsF = await connectAndOpen(focused);
    for (const ws of [wsH, wsF]) ws.push({ type: 'notifications:batch', notifications: [], complete: true, unread_count: 0, version: 2 });
    hiddenWithPanel.setInboxOpen(true);
    // The hidden tab (panel open) hears the notification first…
    wsH.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 3 });
    await vi.advanceTimersByTimeAsync(30);
    // …then the tab the user is looking at.
    visibility = 'visible';
    focus = true;
    wsF.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 3 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(shown).toEqual(['focused']);
  });

  it('emits toast for live notifications but not for the first load catch-up', async () => {
    const { client } = make();
    const toasts: number[] = [];
    client.on('toast', (n) => toasts.push(n.seq));
    const ws = await connectAndOpen(client);
    await flush();
    ws.push({ type: 'notifications:batch', notifications: [notif(1)], complete: true, unread_count: 1, version: 2 });
    ws.push({ type: 'notification', notification: notif(2), unread_count: 2, version: 3 });
    ws.push({ type: 'notification', notification: notif(2), unread_count: 2, version: 3 });
    expect(toasts).toEqual([2]);
  });
});

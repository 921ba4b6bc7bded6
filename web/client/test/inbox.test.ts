import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, matchesFilter, type HeraldClientOptions } from '../src';
import { FakeSocket, fakeFetch, flush, notif, page } from './fakes';

function make(over: Partial<HeraldClientOptions> = {}, routes: Parameters<typeof fakeFetch>[0] = {}) {
  const f = fakeFetch({ '/v1/notifications?': () => page([]), ...routes });
  const client = new HeraldClient({
    url: 'ws://gw.test/v1/ws',
    getToken: async () => 'tok',
    WebSocket: FakeSocket,
    fetch: f.fn,
    crossTab: false,
    seen: false,
    env: { addEventListener: (() => undefined) as any, removeEventListener: (() => undefined) as any, isOnline: () => true },
    ...over,
  });
  return { client, fetch: f };
}

async function live(client: HeraldClient, connected: Record<string, unknown> = {}) {
  client.connect();
  await flush();
  const ws = FakeSocket.last();
  ws.open();
  ws.connected(connected);
  await flush();
  return ws;
}

function result(action: string, ids: string[], unread_count: number, version: number) {
  return { action, ids, up_to_seq: null, has_more: false, unread_count, version };
}

beforeEach(() => {
  FakeSocket.all = [];
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('inbox actions', () => {
  it('archive is optimistic (and reads), sends an inbox command and applies the ack', async () => {
    const { client } = make();
    const ws = await live(client, { unread_count: 2, version: 3 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    const p = client.archive(notif(2).id);
    const held = client.notifications.find((n) => n.seq === 2)!;
    expect(held.archived_at).toBeTruthy();
    expect(held.read_at).toBeTruthy();
    expect(client.unreadCount).toBe(1);
    const cmd = ws.sent.find((m) => m.type === 'inbox');
    expect(cmd).toEqual({ type: 'inbox', action: 'archive', ids: [notif(2).id], rid: expect.any(Number) });
    ws.push({ type: 'ack', rid: cmd.rid, result: result('archive', [notif(2).id], 1, 4) });
    await expect(p).resolves.toMatchObject({ action: 'archive' });
    expect(client.unreadCount).toBe(1);
  });

  it('rolls back a failed action and reports it', async () => {
    const { client } = make({}, { '/v1/notifications/unread-count': () => ({ unread_count: 1, latest_seq: 1, version: 3 }) });
    const ws = await live(client, { unread_count: 1, version: 2 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1)], complete: true, unread_count: 1, version: 2 });
    const p = client.delete(notif(1).id);
    expect(client.notifications).toHaveLength(0);
    const cmd = ws.sent.find((m) => m.type === 'inbox');
    ws.push({ type: 'error', rid: cmd.rid, code: 'service_unavailable', message: 'down' });
    await expect(p).rejects.toMatchObject({ code: 'service_unavailable' });
    expect(client.notifications.map((n) => n.seq)).toEqual([1]);
    expect(client.unreadCount).toBe(1);
    expect(client.actionError).toMatchObject({ action: 'delete' });
  });

  it('uses HTTP when not connected: DELETE for delete, POST …/unread for markUnread', async () => {
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications?': () => page([notif(1, { read_at: '2026-01-01T00:00:00Z' })]),
        [`/v1/notifications/${notif(1).id}/unread`]: () => result('unread', [notif(1).id], 1, 7),
        [`/v1/notifications/${notif(1).id}`]: () => result('delete', [notif(1).id], 0, 8),
      },
    );
    const ws = await live(client);
    await flush();
    ws.serverClose(1006);
    await client.markUnread(notif(1).id);
    let call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.url).toBe(`http://gw.test/v1/notifications/${notif(1).id}/unread`);
    expect(call.init.method).toBe('POST');
    expect(client.unreadCount).toBe(1);
    await client.delete(notif(1).id);
    call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.init.method).toBe('DELETE');
    expect(client.notifications).toHaveLength(0);
    expect(client.unreadCount).toBe(0);
  });

  it('applies inbox events from other tabs, version-ordered', async () => {
    const { client } = make();
    const ws = await live(client, { unread_count: 2, version: 3 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2), notif(3, { read_at: '2026-01-01T00:00:00Z' })], complete: true, unread_count: 2, version: 3 });
    const events: unknown[] = [];
    client.on('lifecycle', (e) => events.push(e));
    ws.push({ type: 'inbox', action: 'delete', ids: [notif(1).id], unread_count: 1, version: 5 });
    ws.push({ type: 'inbox', action: 'unread', ids: [notif(3).id], unread_count: 2, version: 6 });
    // An older event arriving late does not roll the count back.
    ws.push({ type: 'inbox', action: 'archive', ids: [notif(2).id], unread_count: 9, version: 4 });
    expect(client.notifications.map((n) => n.seq)).toEqual([3, 2]);
    expect(client.notifications[0]!.read_at).toBeNull();
    expect(client.notifications[1]!.archived_at).toBeTruthy();
    expect(client.unreadCount).toBe(2);
    expect(events).toHaveLength(3);
  });
});

describe('filters', () => {
  it('matchesFilter', () => {
    const a = notif(1, { archived_at: 'x', read_at: 'x' });
    const u = notif(2, { type: 'mention' });
    expect(matchesFilter(a, { archived: true })).toBe(true);
    expect(matchesFilter(a, { archived: false })).toBe(false);
    expect(matchesFilter(u, { archived: false, unread: true, type: 'mention' })).toBe(true);
    expect(matchesFilter(u, { type: 'comment.created' })).toBe(false);
    expect(matchesFilter(a, {})).toBe(true);
  });

  it('setFilter filters what is held and fetches the filter over HTTP', async () => {
    const { client, fetch } = make({}, { '/v1/notifications?': (url) => (url.includes('archived=true') ? page([notif(7, { archived_at: 'a', read_at: 'a' })]) : page([notif(2), notif(1)])) });
    await live(client);
    await flush();
    expect(client.notifications.map((n) => n.seq)).toEqual([2, 1]);
    client.setFilter({ archived: true });
    expect(client.notifications).toHaveLength(0);
    await flush();
    const call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.url).toBe('http://gw.test/v1/notifications?limit=20&archived=true');
    expect(client.notifications.map((n) => n.seq)).toEqual([7]);
    expect(client.getSnapshot().filter).toEqual({ archived: true, unread: false, type: null });
    client.setFilter({ archived: false, unread: true, type: 'comment.created' });
    await flush();
    expect(fetch.calls[fetch.calls.length - 1]!.url).toBe('http://gw.test/v1/notifications?limit=20&archived=false&unread_only=true&type=comment.created');
    expect(client.notifications.map((n) => n.seq)).toEqual([2, 1]);
  });

  it('bulk by filter repeats with the watermark while has_more', async () => {
    let n = 0;
    const { client, fetch } = make(
      {},
      {
        '/v1/notifications/bulk': () =>
          ++n === 1
            ? { action: 'read', ids: [notif(2).id], up_to_seq: 2, has_more: true, unread_count: 1, version: 5 }
            : { action: 'read', ids: [notif(1).id], up_to_seq: 2, has_more: false, unread_count: 0, version: 6 },
      },
    );
    const ws = await live(client, { unread_count: 2, version: 3 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    const out = await client.bulk('read', { filter: { type: 'comment.created' } });
    expect(out).toHaveLength(2);
    const bodies = fetch.calls.filter((c) => c.url.endsWith('/bulk')).map((c) => JSON.parse(String(c.init.body)));
    expect(bodies).toEqual([
      { action: 'read', filter: { type: 'comment.created' } },
      { action: 'read', filter: { type: 'comment.created' }, up_to_seq: 2 },
    ]);
    expect(client.notifications.every((x) => x.read_at)).toBe(true);
    expect(client.unreadCount).toBe(0);
  });
});

describe('seen watermark', () => {
  it('a visible tab reports what it holds as seen, once, debounced', async () => {
    let visible = true;
    const { client } = make({ seen: 'visible', isVisible: () => visible });
    const ws = await live(client, { seen_seq: 0, latest_seq: 2 });
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    expect(ws.sent.filter((m) => m.type === 'seen')).toHaveLength(0);
    vi.advanceTimersByTime(300);
    const sent = ws.sent.filter((m) => m.type === 'seen');
    expect(sent).toEqual([{ type: 'seen', seq: 2, rid: expect.any(Number) }]);
    ws.push({ type: 'ack', rid: sent[0].rid, result: { seen_seq: 2, changed: true, version: 4 } });
    await flush();
    expect(client.seenSeq).toBe(2);
    // Hidden: a new notification is not seen…
    visible = false;
    ws.push({ type: 'notification', notification: notif(3), unread_count: 3, version: 5 });
    vi.advanceTimersByTime(1000);
    expect(ws.sent.filter((m) => m.type === 'seen')).toHaveLength(1);
    // …until the tab becomes visible again.
    visible = true;
    document.dispatchEvent(new Event('visibilitychange'));
    vi.advanceTimersByTime(300);
    expect(ws.sent.filter((m) => m.type === 'seen').map((m) => m.seq)).toEqual([2, 3]);
  });

  it("'panel' mode reports only while the panel is open; seen events from elsewhere raise the watermark", async () => {
    const { client } = make({ seen: 'panel', isVisible: () => true });
    const ws = await live(client, { seen_seq: 1 });
    expect(client.seenSeq).toBe(1);
    ws.push({ type: 'notifications:batch', notifications: [notif(1), notif(2)], complete: true, unread_count: 2, version: 3 });
    vi.advanceTimersByTime(1000);
    expect(ws.sent.filter((m) => m.type === 'seen')).toHaveLength(0);
    client.setInboxOpen(true);
    vi.advanceTimersByTime(300);
    expect(ws.sent.filter((m) => m.type === 'seen').map((m) => m.seq)).toEqual([2]);
    const seen: number[] = [];
    client.on('seen', (s) => seen.push(s));
    ws.push({ type: 'seen', seen_seq: 5, version: 9 });
    ws.push({ type: 'seen', seen_seq: 4, version: 8 });
    expect(client.seenSeq).toBe(5);
    expect(seen).toEqual([5]);
  });

  it('never reports when seen is false', async () => {
    const { client } = make({ seen: false, isVisible: () => true });
    const ws = await live(client);
    ws.push({ type: 'notification', notification: notif(1), unread_count: 1, version: 2 });
    vi.advanceTimersByTime(1000);
    expect(ws.sent.filter((m) => m.type === 'seen')).toHaveLength(0);
  });
});

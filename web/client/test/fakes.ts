import type { Notification } from '../src/types';
import type { WebSocketLike } from '../src/client';

/** A scriptable WebSocket: tests drive the server side. */
export class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  static last(): FakeSocket {
    const s = FakeSocket.all[FakeSocket.all.length - 1];
    if (!s) throw new Error('no socket opened');
    return s;
  }
  readyState = 0;
  sent: any[] = [];
  closedWith: number | null = null;
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: any }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  constructor(public url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // --- server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  serverClose(code: number, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  connected(over: Partial<Record<string, unknown>> = {}) {
    this.push({
      type: 'connected',
      user_id: 'alice',
      node_id: 'node-a',
      session_id: '00000000-0000-0000-0000-000000000000',
      latest_seq: 0,
      unread_count: 0,
      version: 1,
      seen_seq: 0,
      resume_from: 0,
      token_expires_at: 2_000_000_000,
      heartbeat_interval_ms: 25_000,
      limits: { max_message_bytes: 16384, messages_per_second: 20, message_burst: 40, max_sockets_per_user: 16, max_resume_gap: 1000 },
      ...over,
    });
  }
}

export function notif(seq: number, over: Partial<Notification> = {}): Notification {
  return {
    id: `00000000-0000-0000-0000-${String(seq).padStart(12, '0')}`,
    user_id: 'alice',
    seq,
    type: 'comment.created',
    title: `Notification ${seq}`,
    body: '',
    link: null,
    avatar_url: null,
    data: null,
    created_at: new Date(1_700_000_000_000 + seq * 1000).toISOString(),
    delivered_at: null,
    read_at: null,
    ...over,
  };
}

export function page(notifications: Notification[], over: Record<string, unknown> = {}) {
  return {
    notifications,
    next_cursor: null,
    unread_count: notifications.filter((n) => !n.read_at).length,
    latest_seq: notifications.reduce((m, n) => Math.max(m, n.seq), 0),
    ...over,
  };
}

/** A fetch mock answering by path prefix; records calls. */
/** A route's answer with a status other than 200. */
export class Reply {
  constructor(
    public status: number,
    public body: unknown,
  ) {}
}

export function fakeFetch(routes: Record<string, (url: string, init: RequestInit) => unknown>) {
  const calls: Array<{ url: string; init: RequestInit }> = [];
  const fn = async (input: any, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, init });
    const path = new URL(url).pathname + new URL(url).search;
    const key = Object.keys(routes).find((k) => path.startsWith(k));
    const out = key ? routes[key]!(url, init) : new Reply(404, { code: 'not_found', message: 'no route' });
    const status = out instanceof Reply ? out.status : 200;
    const body = out instanceof Reply ? out.body : out;
    return { ok: status < 300, status, text: async () => JSON.stringify(body) };
  };
  return { fn: fn as unknown as typeof fetch, calls };
}

export const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

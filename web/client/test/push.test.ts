import { describe, expect, it, vi } from 'vitest';
import { HeraldClient, base64UrlToBytes, type PushSubscriptionLike } from '../src';
import { FakeSocket, fakeFetch } from './fakes';

const KEY = 'BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8';
const ENDPOINT = 'https://push.example/wpush/a b?x=1';

function fakeSub(key: Uint8Array | null): PushSubscriptionLike & { unsubscribed: boolean } {
  return {
    endpoint: ENDPOINT,
    options: { applicationServerKey: key ? key.buffer.slice(0) as ArrayBuffer : null },
    unsubscribed: false,
    toJSON() {
      return { endpoint: ENDPOINT, expirationTime: null, keys: { p256dh: 'pk', auth: 'au' } };
    },
    async unsubscribe() {
      this.unsubscribed = true;
      return true;
    },
  };
}

function registration(existing: ReturnType<typeof fakeSub> | null) {
  const made = fakeSub(base64UrlToBytes(KEY));
  const subscribe = vi.fn(async () => made);
  return { reg: { pushManager: { getSubscription: async () => existing, subscribe } }, subscribe, made };
}

function client(routes: Parameters<typeof fakeFetch>[0]) {
  const f = fakeFetch(routes);
  const c = new HeraldClient({ url: 'ws://gw.test/v1/ws', getToken: async () => 'tok', WebSocket: FakeSocket, fetch: f.fn, crossTab: false });
  return { c, f };
}

describe('web push', () => {
  it('decodes base64url keys', () => {
    const b = base64UrlToBytes(KEY);
    expect(b.length).toBe(65);
    expect(b[0]).toBe(4);
    expect(Array.from(base64UrlToBytes('-_8'))).toEqual([0xfb, 0xff]);
  });

  it('fetches the VAPID key, subscribes and registers the subscription', async () => {
    const { c, f } = client({
      '/v1/push/vapid-public-key': () => ({ public_key: KEY }),
      '/v1/me/push-subscriptions': () => ({ id: 'i', endpoint: ENDPOINT, user_agent: null, created_at: 'now' }),
    });
    const { reg, subscribe } = registration(null);
    const info = await c.registerPush({ serviceWorker: reg });
    expect(info.id).toBe('i');
    expect(subscribe).toHaveBeenCalledWith({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(KEY) });
    const post = f.calls.find((x) => x.init.method === 'POST')!;
    expect(post.url).toBe('http://gw.test/v1/me/push-subscriptions');
    expect(JSON.parse(String(post.init.body))).toEqual({ endpoint: ENDPOINT, expirationTime: null, keys: { p256dh: 'pk', auth: 'au' } });
    expect((post.init.headers as Record<string, string>).Authorization).toBe('Bearer tok');
  });

  it('replaces a subscription made with another key, keeps one made with this key', async () => {
    const { c, f } = client({ '/v1/me/push-subscriptions': () => ({ id: 'i' }) });
    const stale = fakeSub(new Uint8Array(65));
    const a = registration(stale);
    await c.registerPush({ serviceWorker: a.reg, vapidPublicKey: KEY });
    expect(stale.unsubscribed).toBe(true);
    expect(a.subscribe).toHaveBeenCalledTimes(1);
    const same = fakeSub(base64UrlToBytes(KEY));
    const b = registration(same);
    await c.registerPush({ serviceWorker: b.reg, vapidPublicKey: KEY });
    expect(b.subscribe).not.toHaveBeenCalled();
    expect(same.unsubscribed).toBe(false);
    // The key was given: never fetched.
    expect(f.calls.some((x) => x.url.includes('vapid-public-key'))).toBe(false);
  });

  it('unregisters by endpoint, URL-encoded, and unsubscribes', async () => {
    const { c, f } = client({ '/v1/me/push-subscriptions': () => null });
    const sub = fakeSub(null);
    expect(await c.unregisterPush({ serviceWorker: registration(sub).reg })).toBe(true);
    const del = f.calls.find((x) => x.init.method === 'DELETE')!;
    expect(del.url).toBe(`http://gw.test/v1/me/push-subscriptions?endpoint=${encodeURIComponent(ENDPOINT)}`);
    expect(sub.unsubscribed).toBe(true);
    expect(await c.unregisterPush({ serviceWorker: registration(null).reg })).toBe(false);
  });

  it('a server that no longer has the subscription still unsubscribes; other errors surface', async () => {
    const gone = client({});
    const sub = fakeSub(null);
    expect(await gone.c.unregisterPush({ serviceWorker: registration(sub).reg })).toBe(true);
    expect(sub.unsubscribed).toBe(true);
    const refused = client({ '/v1/push/vapid-public-key': () => ({ public_key: KEY }) });
    const r = registration(null);
    await expect(refused.c.registerPush({ serviceWorker: r.reg })).rejects.toMatchObject({ code: 'not_found' });
  });
});

/**
 * Web Push registration: subscribe this browser with the server's VAPID key and register the
 * subscription with Herald, so offline fallbacks reach it (docs/channels.md, Web Push).
 * `HeraldClient.registerPush` / `unregisterPush` call these with the client's authenticated HTTP.
 */

/** The client's authenticated JSON call (`HeraldClient`'s own). */
export type PushHttp = <T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => Promise<T>;

/** The parts of `PushSubscription` used (a real one fits). */
export interface PushSubscriptionLike {
  readonly endpoint: string;
  readonly options?: { readonly applicationServerKey?: ArrayBuffer | null };
  toJSON(): unknown;
  unsubscribe(): Promise<boolean>;
}

/** The parts of `ServiceWorkerRegistration` used (a real one fits). */
export interface PushRegistrationLike {
  readonly pushManager: {
    getSubscription(): Promise<PushSubscriptionLike | null>;
    subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array<ArrayBuffer> }): Promise<PushSubscriptionLike>;
  };
}

export interface RegisterPushOptions {
  /** The service worker registration that shows the pushes (`navigator.serviceWorker.register(...)`). */
  serviceWorker: PushRegistrationLike;
  /** The server's VAPID public key (base64url); fetched from `GET /v1/push/vapid-public-key` when absent. */
  vapidPublicKey?: string;
}

/** A subscription as the server stored it. */
export interface PushSubscriptionInfo {
  id: string;
  endpoint: string;
  user_agent: string | null;
  created_at: string;
}

/** base64url (padding optional) → bytes. */
export function base64UrlToBytes(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function sameKey(sub: PushSubscriptionLike, key: Uint8Array): boolean {
  const have = sub.options?.applicationServerKey;
  if (!have) return true; // unknown: keep it
  const a = new Uint8Array(have);
  return a.length === key.length && a.every((b, i) => b === key[i]);
}

/**
 * Subscribes (or reuses this browser's subscription when it was made with the same key) and
 * registers it with the server. Asks for notification permission through `subscribe`.
 */
export async function registerPush(http: PushHttp, opts: RegisterPushOptions): Promise<PushSubscriptionInfo> {
  const keyText = opts.vapidPublicKey ?? (await http<{ public_key: string }>('GET', '/v1/push/vapid-public-key')).public_key;
  const key = base64UrlToBytes(keyText);
  const pm = opts.serviceWorker.pushManager;
  let sub = await pm.getSubscription();
  if (sub && !sameKey(sub, key)) {
    // Made for another server key: the push service would refuse our pushes to it.
    await sub.unsubscribe();
    sub = null;
  }
  sub ??= await pm.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  return http<PushSubscriptionInfo>('POST', '/v1/me/push-subscriptions', sub.toJSON());
}

/**
 * Removes this browser's subscription from the server (a server that no longer has it is fine)
 * and unsubscribes it. `false` when there was none.
 */
export async function unregisterPush(http: PushHttp, opts: { serviceWorker: PushRegistrationLike }): Promise<boolean> {
  const sub = await opts.serviceWorker.pushManager.getSubscription();
  if (!sub) return false;
  try {
    await http<null>('DELETE', `/v1/me/push-subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`);
  } catch (e) {
    if ((e as { code?: unknown })?.code !== 'not_found') throw e;
  }
  await sub.unsubscribe();
  return true;
}

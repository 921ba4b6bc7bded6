// Shared test fixtures: a HeraldClient that never connects, and a helper that emits toasts on it.
import { vi } from 'vitest';
import { act } from '@testing-library/react';
import type { Notification } from 'herald-notify-client';
import { HeraldClient } from 'herald-notify-client';

/** A WebSocket stand-in that never opens, so a client stays where the test puts it. */
export class NoSocket {
  readyState = 0;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  send() {}
  close() {}
}

/** A client on `NoSocket` (no cross-tab channel unless asked for). */
export function noSocketClient(over: { url?: string; crossTab?: boolean } = {}): HeraldClient {
  return new HeraldClient({ url: over.url ?? 'ws://x.test/v1/ws', getToken: async () => 't', WebSocket: NoSocket as any, crossTab: over.crossTab ?? false });
}

/** A `noSocketClient` with `markRead` stubbed, and `toast(seq, over)` emitting `make(seq)` as a toast. */
export function toastClient(make: (seq: number) => Notification) {
  const client = noSocketClient();
  const markRead = vi.spyOn(client, 'markRead').mockResolvedValue();
  const toast = (seq: number, over: Partial<Notification> = {}) => act(() => void (client as any).emit('toast', { ...make(seq), ...over }));
  return { client, markRead, toast };
}

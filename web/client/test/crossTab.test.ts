import { describe, expect, it, vi } from 'vitest';
import { ToastCoordinator, type ChannelLike } from '../src/crossTab';

/** An in-memory BroadcastChannel bus (delivery is async, like the real thing). */
function bus() {
  const members: ChannelLike[] = [];
  return (_name: string): ChannelLike => {
    const ch: ChannelLike = {
      onmessage: null,
      postMessage(msg: unknown) {
        for (const m of members) if (m !== ch) setTimeout(() => m.onmessage?.({ data: msg } as MessageEvent), 5);
      },
      close() {
        members.splice(members.indexOf(ch), 1);
      },
    };
    members.push(ch);
    return ch;
  };
}

describe('cross-tab toast claim', () => {
  it('exactly one of two tabs wins a simultaneous claim', async () => {
    vi.useFakeTimers();
    const f = bus();
    const a = new ToastCoordinator('alice', 100, f);
    const b = new ToastCoordinator('alice', 100, f);
    const ra = a.claim('n1');
    const rb = b.claim('n1');
    await vi.advanceTimersByTimeAsync(200);
    const results = [await ra, await rb];
    expect(results.filter(Boolean)).toHaveLength(1);
    vi.useRealTimers();
  });

  it('a tab that sees the notification later does not toast it again', async () => {
    vi.useFakeTimers();
    const f = bus();
    const a = new ToastCoordinator('alice', 100, f);
    const b = new ToastCoordinator('alice', 100, f);
    const ra = a.claim('n2');
    await vi.advanceTimersByTimeAsync(150);
    expect(await ra).toBe(true);
    await vi.advanceTimersByTimeAsync(5_000);
    const rb = b.claim('n2');
    await vi.advanceTimersByTimeAsync(150);
    expect(await rb).toBe(false);
    vi.useRealTimers();
  });

  it('a single tab always wins', async () => {
    const t = new ToastCoordinator('bob', 1, () => null);
    expect(await t.claim('x')).toBe(true);
  });
});

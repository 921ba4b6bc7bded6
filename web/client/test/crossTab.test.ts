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
    await vi.advanceTimersByTimeAsync(1_000);
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
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await ra).toBe(true);
    await vi.advanceTimersByTimeAsync(5_000);
    const rb = b.claim('n2', 3); // even a better-placed tab: the toast was already shown
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await rb).toBe(false);
    vi.useRealTimers();
  });

  it('the visible, focused tab wins over a hidden one that claimed first', async () => {
    vi.useFakeTimers();
    const f = bus();
    const hidden = new ToastCoordinator('alice', 100, f);
    const focused = new ToastCoordinator('alice', 100, f);
    const rh = hidden.claim('n3', 0);
    await vi.advanceTimersByTimeAsync(20); // the hidden tab got the event first
    const rf = focused.claim('n3', 2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await rf).toBe(true);
    expect(await rh).toBe(false);
    vi.useRealTimers();
  });

  it('a visible tab wins over a hidden one even when the hidden one claims later', async () => {
    vi.useFakeTimers();
    const f = bus();
    const visible = new ToastCoordinator('alice', 100, f);
    const hidden = new ToastCoordinator('alice', 100, f);
    const rv = visible.claim('n4', 1);
    const rh = hidden.claim('n4', 0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect([await rv, await rh]).toEqual([true, false]);
    vi.useRealTimers();
  });

  it('a single tab always wins', async () => {
    const t = new ToastCoordinator('bob', 1, () => null);
    expect(await t.claim('x')).toBe(true);
  });
});

/**
 * Cross-tab "first tab to claim a notification id wins": used so that a toast is shown once per
 * user, not once per tab. Every tab of the user shares the BroadcastChannel `herald:<userId>`.
 *
 * claim(id): if any tab already claimed the id (we heard its claim), we lose at once. Otherwise
 * we announce our claim and wait `windowMs`; if another tab's claim for the same id arrives in
 * that window, the claim with the smaller (timestamp, tabId) wins — deterministic on both sides.
 * Claims heard are remembered (bounded), so a tab that receives the notification much later
 * (e.g. after a reconnect) does not toast it again.
 */
interface ClaimMsg {
  type: 'claim';
  id: string;
  tab: string;
  at: number;
}

export interface ChannelLike {
  postMessage(msg: unknown): void;
  close(): void;
  onmessage: ((ev: MessageEvent) => void) | null;
}

export class ToastCoordinator {
  readonly tabId: string;
  private channel: ChannelLike | null;
  /** id -> best claim heard (including ours). */
  private claims = new Map<string, { tab: string; at: number }>();
  private readonly max = 1000;

  constructor(
    readonly userId: string,
    private readonly windowMs = 120,
    channelFactory?: (name: string) => ChannelLike | null,
  ) {
    this.tabId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    const make =
      channelFactory ??
      ((name: string) => (typeof BroadcastChannel === 'function' ? (new BroadcastChannel(name) as unknown as ChannelLike) : null));
    this.channel = make(`herald:${userId}`);
    if (this.channel) {
      this.channel.onmessage = (ev: MessageEvent) => {
        const m = ev.data as ClaimMsg;
        if (m && m.type === 'claim' && typeof m.id === 'string') this.record(m.id, m.tab, m.at);
      };
    }
  }

  private static better(a: { tab: string; at: number }, b: { tab: string; at: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.tab < b.tab);
  }

  private record(id: string, tab: string, at: number): void {
    const cur = this.claims.get(id);
    if (!cur || ToastCoordinator.better({ tab, at }, cur)) this.claims.set(id, { tab, at });
    if (this.claims.size > this.max) {
      const first = this.claims.keys().next().value;
      if (first !== undefined) this.claims.delete(first);
    }
  }

  /** Resolves true if this tab should show the toast for `id`. */
  async claim(id: string): Promise<boolean> {
    if (!this.channel) return true; // single-tab environment
    const prior = this.claims.get(id);
    if (prior && prior.tab !== this.tabId) return false;
    if (prior && prior.tab === this.tabId) return false; // already claimed (and toasted) here
    const at = Date.now();
    this.record(id, this.tabId, at);
    this.channel.postMessage({ type: 'claim', id, tab: this.tabId, at } satisfies ClaimMsg);
    await new Promise((r) => setTimeout(r, this.windowMs));
    return this.claims.get(id)?.tab === this.tabId;
  }

  close(): void {
    this.channel?.close();
    this.channel = null;
  }
}

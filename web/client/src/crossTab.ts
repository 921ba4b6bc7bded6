/**
 * Cross-tab "first tab to claim a notification id wins": used so that a toast is shown once per
 * user, not once per tab. Every tab of the user shares the BroadcastChannel `herald:<userId>`.
 *
 * claim(id, rank): every claim carries the tab's rank (higher = better placed to show it: the
 * visible, focused tab; see HeraldClient's `tabRank`). We announce our claim and wait; a tab
 * waits longer the lower its rank (`windowMs` × (1 + MAX_RANK − rank)), so a visible, focused
 * tab decides first and a hidden one hears it before deciding. The best claim wins: highest
 * rank, then the smaller (timestamp, tabId) — deterministic on both sides. If a claim for the id
 * was heard that can no longer be overtaken (older than the longest window) or that outranks
 * ours, we lose at once. Claims heard are remembered (bounded), so a tab that receives the
 * notification much later (e.g. after a reconnect) does not toast it again.
 */
interface ClaimMsg {
  type: 'claim';
  id: string;
  tab: string;
  at: number;
  rank?: number;
}

interface Claim {
  tab: string;
  at: number;
  rank: number;
}

/** The highest rank a tab can claim with. */
export const MAX_RANK = 3;

export interface ChannelLike {
  postMessage(msg: unknown): void;
  close(): void;
  onmessage: ((ev: MessageEvent) => void) | null;
}

export class ToastCoordinator {
  readonly tabId: string;
  private channel: ChannelLike | null;
  /** id -> best claim heard (including ours). */
  private claims = new Map<string, Claim>();
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
        if (m && m.type === 'claim' && typeof m.id === 'string') this.record(m.id, { tab: m.tab, at: m.at, rank: typeof m.rank === 'number' ? m.rank : 0 });
      };
    }
  }

  private static better(a: Claim, b: Claim): boolean {
    if (a.rank !== b.rank) return a.rank > b.rank;
    return a.at < b.at || (a.at === b.at && a.tab < b.tab);
  }

  private record(id: string, claim: Claim): void {
    const cur = this.claims.get(id);
    if (!cur || ToastCoordinator.better(claim, cur)) this.claims.set(id, claim);
    if (this.claims.size > this.max) {
      const first = this.claims.keys().next().value;
      if (first !== undefined) this.claims.delete(first);
    }
  }

  /** Resolves true if this tab should show the toast for `id`. `rank`: 0 (hidden) … MAX_RANK. */
  async claim(id: string, rank = 0): Promise<boolean> {
    if (!this.channel) return true; // single-tab environment
    const r = Math.max(0, Math.min(MAX_RANK, Math.floor(rank)));
    const at = Date.now();
    const ours: Claim = { tab: this.tabId, at, rank: r };
    const prior = this.claims.get(id);
    if (prior && prior.tab === this.tabId) return false; // already claimed (and toasted) here
    if (prior && (at - prior.at > this.windowMs * (MAX_RANK + 1) || !ToastCoordinator.better(ours, prior))) return false;
    this.record(id, ours);
    this.channel.postMessage({ type: 'claim', id, tab: this.tabId, at, rank: r } satisfies ClaimMsg);
    await new Promise((res) => setTimeout(res, this.windowMs * (1 + MAX_RANK - r)));
    return this.claims.get(id)?.tab === this.tabId;
  }

  close(): void {
    this.channel?.close();
    this.channel = null;
  }
}

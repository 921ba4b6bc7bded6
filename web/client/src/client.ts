import { backoffDelay, isTerminalClose, type BackoffOptions } from './backoff';
import { registerPush, unregisterPush, type PushRegistrationLike, type PushSubscriptionInfo, type RegisterPushOptions } from './push';
import { ToastCoordinator, type ChannelLike } from './crossTab';
import { Emitter } from './emitter';
import type {
  AckResult,
  Broadcast,
  ClientMessage,
  ErrorBody,
  InboxAction,
  InboxCounts,
  InboxFilter,
  InboxResult,
  MarkAllReadResult,
  MarkReadResult,
  Notification,
  NotificationPage,
  Preferences,
  PreferencesSchema,
  SeenResult,
  ServerMessage,
  UnreadCount,
} from './types';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed' | 'error';

/** The minimal WebSocket surface the client uses (the browser's WebSocket satisfies it). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface HeraldClientOptions {
  /** WebSocket endpoint, e.g. `wss://app.example.com/v1/ws`. */
  url: string;
  /** HTTP API base (default: derived from `url`: ws→http, wss→https, path dropped). */
  apiUrl?: string;
  /** Returns a fresh user token; called before every (re)connect and on `token_expiring`. */
  getToken: () => Promise<string>;
  /** The user id, for the cross-tab channel. Defaults to the `connected` event's user_id. */
  userId?: string;
  /** Page size for HTTP fetches (default 20). */
  pageSize?: number;
  backoff?: BackoffOptions;
  /** Milliseconds a command waits for its ack before failing (default 10 000). */
  commandTimeoutMs?: number;
  /** Cross-tab toast de-duplication (default true). */
  crossTab?: boolean;
  /** Injection points (tests, non-browser runtimes). */
  WebSocket?: WebSocketCtor;
  fetch?: typeof fetch;
  random?: () => number;
  channelFactory?: (name: string) => ChannelLike | null;
  /**
   * How well placed this tab is to show a toast, for the cross-tab claim (higher wins): default
   * 3 while the page is visible with the inbox panel open, 2 when visible and focused, 1 when
   * visible, 0 when hidden (an open panel in a hidden tab counts for nothing).
   */
  tabRank?: () => number;
  /**
   * When this tab reports notifications as seen (the `seen` watermark, which cancels the
   * server's offline fallbacks): `'visible'` (default) — whenever the page is visible, every
   * notification this tab holds (in the list, the badge or a toast) is seen; `'panel'` — only
   * while the inbox panel is open in a visible page; `false` — never automatically (call
   * `markSeen`).
   */
  seen?: 'visible' | 'panel' | false;
  /** Milliseconds to gather notifications before one `seen` is sent (default 300). */
  seenDelayMs?: number;
  /** Whether the page is visible (default: `document.visibilityState === 'visible'`). */
  isVisible?: () => boolean;
  /** `window`-like target for online/offline events and `navigator.onLine` (default: globals). */
  env?: { addEventListener?: Window['addEventListener']; removeEventListener?: Window['removeEventListener']; isOnline?: () => boolean };
}

export interface ClientError {
  /** A close code (number) or an error code string. */
  code: number | string;
  message: string;
  /** For `validation_failed` / `invalid_parameter` answers: the refused field (e.g. `quiet_hours.time_zone`). */
  field?: string;
}

/** A user action that failed; its optimistic change was rolled back. */
export type FailedAction = 'mark_read' | 'mark_all_read' | 'load_more' | 'archive' | 'unarchive' | 'mark_unread' | 'delete' | 'bulk';

/**
 * Which notifications the list shows (`setFilter`): `archived` true = only archived, false =
 * only the inbox, absent/null = both; `unread` true = only unread; `type` one type.
 */
export interface ListFilter {
  archived?: boolean | null;
  unread?: boolean;
  type?: string | null;
}

/** What a bulk action selects: ids (1–100), or everything matching a filter. */
export type BulkTarget = { ids: string[] } | { filter: InboxFilter };
export interface ActionError extends ClientError {
  action: FailedAction;
}

export type NotificationSource = 'live' | 'catchup' | 'http';

export interface HeraldEvents {
  /** A notification this client did not hold before. `initial` is true during the first load. */
  notification: (n: Notification, meta: { source: NotificationSource; initial: boolean }) => void;
  /** This tab won the cross-tab claim for a new live notification: show a toast for it. */
  toast: (n: Notification) => void;
  state: (state: ConnectionState, prev: ConnectionState) => void;
  read: (ev: { ids: string[]; up_to_seq: number | null; read_at: string }) => void;
  global: (b: Broadcast) => void;
  error: (err: ClientError) => void;
  connected: (info: { user_id: string; node_id: string; session_id: string }) => void;
  /** The inbox panel was opened or closed (`setInboxOpen`); toasts are not shown while it is open. */
  inbox: (open: boolean) => void;
  /** Notifications were archived, unarchived, read, unread or deleted (here, in another tab or device, or by the retention purge). */
  lifecycle: (ev: { action: InboxAction; ids: string[] }) => void;
  /** The seen watermark rose (here or elsewhere): every notification with `seq <= seenSeq` is seen. */
  seen: (seenSeq: number) => void;
  /** Anything visible changed (list, counts, state): re-read `getSnapshot()`. */
  change: () => void;
}

export interface HeraldSnapshot {
  state: ConnectionState;
  notifications: readonly Notification[];
  unreadCount: number;
  loading: boolean;
  hasMore: boolean;
  error: ClientError | null;
  /** The last user action that failed (its optimistic change was undone); null once dismissed or after a later success. */
  actionError: ActionError | null;
  nodeId: string | null;
  userId: string | null;
  /** The seen watermark: notifications with `seq <= seenSeq` are seen (shown in a visible tab, here or elsewhere). */
  seenSeq: number;
  /** The list's filter (`setFilter`); `notifications` holds only what matches it. */
  filter: ListFilter;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A command without its `rid` (the client assigns one). */
type Command = DistributiveOmit<Exclude<ClientMessage, { type: 'auth' }>, 'rid'>;

interface Pending {
  resolve: (r: AckResult) => void;
  reject: (e: ClientError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;
const STABLE_MS = 5_000;

export class HeraldClient extends Emitter<HeraldEvents> {
  private readonly opts: HeraldClientOptions;
  private readonly apiUrl: string;
  /** Resolved when connecting (not at construction: server rendering has no WebSocket). */
  private readonly WS: WebSocketCtor | undefined;
  private readonly fetchFn: typeof fetch;
  private readonly random: () => number;

  private ws: WebSocketLike | null = null;
  private _state: ConnectionState = 'idle';
  private started = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  private connectedAt = 0;
  private authenticated = false;
  private token: string | null = null;
  private everConnected = false;
  private initialLoad = true;
  private firstPageFetched = false;
  private catchingUp = false;

  private byId = new Map<string, Notification>();
  private sorted: Notification[] | null = [];
  private highestSeq = 0;
  private _unread = 0;
  private version = -1;
  private nextCursor: string | null = null;
  private _hasMore = true;
  private _loading = false;
  private _error: ClientError | null = null;
  private _actionError: ActionError | null = null;
  /** The unread count holds an optimistic change not backed by `version`: accept an equal version. */
  private countDirty = false;
  /** An optimistic change failed: re-read the newest page's read state on the next connect. */
  private needsReconcile = false;
  /** `read_at` stamps of optimistic changes still in flight (a `read` event replaces them). */
  private optimisticStamps = new Set<string>();
  /** `_error` came from loading the list over HTTP (a successful load clears it). */
  private errorFromLoad = false;
  private _inboxOpen = false;
  private _nodeId: string | null = null;
  private _userId: string | null;
  private rid = 0;
  private pending = new Map<number, Pending>();
  private coordinator: ToastCoordinator | null = null;
  private snapshot: HeraldSnapshot | null = null;
  private _seenSeq = 0;
  /** The highest seq this tab asked the server to mark seen. */
  private seenSent = 0;
  private seenTimer: ReturnType<typeof setTimeout> | null = null;
  private _filter: ListFilter = {};

  constructor(opts: HeraldClientOptions) {
    super();
    this.opts = opts;
    this.apiUrl = (opts.apiUrl ?? deriveApiUrl(opts.url)).replace(/\/+$/, '');
    this.WS = opts.WebSocket;
    this.fetchFn = opts.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
    this.random = opts.random ?? Math.random;
    this._userId = opts.userId ?? null;
    if (this._userId) this.setupCoordinator(this._userId);
  }

  // ---------------------------------------------------------------- public state

  get state(): ConnectionState {
    return this._state;
  }
  get unreadCount(): number {
    return this._unread;
  }
  get notifications(): readonly Notification[] {
    if (!this.sorted) this.sorted = [...this.byId.values()].filter((n) => matchesFilter(n, this._filter)).sort((a, b) => b.seq - a.seq);
    return this.sorted;
  }
  /** The seen watermark (see `HeraldSnapshot.seenSeq`). */
  get seenSeq(): number {
    return this._seenSeq;
  }
  get filter(): ListFilter {
    return this._filter;
  }
  get lastSeq(): number {
    return this.highestSeq;
  }
  get nodeId(): string | null {
    return this._nodeId;
  }
  get hasMore(): boolean {
    return this._hasMore;
  }
  get loading(): boolean {
    return this._loading;
  }
  get error(): ClientError | null {
    return this._error;
  }
  get actionError(): ActionError | null {
    return this._actionError;
  }

  /** Whether an inbox panel is open in this tab (see `setInboxOpen`). */
  get inboxOpen(): boolean {
    return this._inboxOpen;
  }

  /**
   * Tell the client that the notification list is on screen (the bell's panel is open): no
   * `toast` is emitted meanwhile — the list already shows what a toast would — and this tab
   * claims new notifications across tabs so that no other tab toasts them either.
   */
  setInboxOpen(open: boolean): void {
    if (open === this._inboxOpen) return;
    this._inboxOpen = open;
    this.emit('inbox', open);
    if (open) this.maybeReportSeen();
  }

  /**
   * Show only notifications matching `filter` (the bell's tabs: inbox, unread, archived, a
   * type). Held notifications are filtered at once; the newest page of the filter is fetched
   * over HTTP, and `loadMore` pages through it.
   */
  setFilter(filter: ListFilter): void {
    const next: ListFilter = { archived: filter.archived ?? null, unread: !!filter.unread, type: filter.type || null };
    const cur = this._filter;
    if ((cur.archived ?? null) === next.archived && !!cur.unread === next.unread && (cur.type || null) === next.type) return;
    this._filter = next;
    this.sorted = null;
    this.nextCursor = null;
    this._hasMore = true;
    this.changed();
    if (this.started) void this.fetchPage(null, false).catch(() => undefined);
  }

  /**
   * Web Push: subscribes this browser through `serviceWorker` with the server's VAPID key and
   * registers the subscription, so offline fallbacks reach it as system notifications.
   */
  registerPush(opts: RegisterPushOptions): Promise<PushSubscriptionInfo> {
    return registerPush((m, p, b) => this.http(m, p, b), opts);
  }

  /** Web Push: removes this browser's subscription (server and browser); `false` if there was none. */
  unregisterPush(opts: { serviceWorker: PushRegistrationLike }): Promise<boolean> {
    return unregisterPush((m, p, b) => this.http(m, p, b), opts);
  }

  /** The counts behind each filter (`GET /v1/notifications/counts`). */
  async fetchCounts(): Promise<InboxCounts> {
    const c = await this.http<InboxCounts>('GET', '/v1/notifications/counts');
    this.applyCount(c.unread, c.version);
    this.changed();
    return c;
  }

  /** Archive one notification (it is read too); optimistic, rolled back on failure. */
  archive(id: string): Promise<InboxResult> {
    return this.itemAction('archive', id, 'archive');
  }
  /** Move an archived notification back to the inbox (it stays read). */
  unarchive(id: string): Promise<InboxResult> {
    return this.itemAction('unarchive', id, 'unarchive');
  }
  /** Mark one notification unread (not while archived). */
  markUnread(id: string): Promise<InboxResult> {
    return this.itemAction('unread', id, 'mark_unread');
  }
  /** Delete one notification for good. */
  delete(id: string): Promise<InboxResult> {
    return this.itemAction('delete', id, 'delete');
  }

  /**
   * One action on many notifications: `{ids}` (1–100) or `{filter}` (everything matching, up to
   * the newest seq at the first call; repeated while the server says `has_more`).
   */
  async bulk(action: InboxAction, target: BulkTarget): Promise<InboxResult[]> {
    const out: InboxResult[] = [];
    let upTo: number | null = null;
    try {
      for (let i = 0; i < 1000; i++) {
        const body: Record<string, unknown> = { action, ...target };
        if ('filter' in target && upTo !== null) body.up_to_seq = upTo;
        const r: InboxResult = await this.http<InboxResult>('POST', '/v1/notifications/bulk', body);
        out.push(r);
        this.applyLocal(r.action, r.ids);
        this.applyCount(r.unread_count, r.version);
        this.changed();
        if (!r.has_more) break;
        upTo = r.up_to_seq;
      }
      if (this._actionError?.action === 'bulk') this._actionError = null;
      return out;
    } catch (e) {
      this.failAction('bulk', e);
      throw e;
    }
  }

  /**
   * Report every notification with `seq <= seq` (default: the newest this tab holds) as seen.
   * The client does this itself (option `seen`); call it for custom surfaces.
   */
  async markSeen(seq?: number): Promise<void> {
    const target = seq ?? this.highestHeld();
    if (target <= Math.max(this._seenSeq, this.seenSent)) return;
    this.seenSent = target;
    let r: SeenResult;
    try {
      if (this.isLive()) {
        try {
          r = (await this.command({ type: 'seen', seq: target })) as SeenResult;
        } catch (e) {
          if ((e as ClientError).code !== 'disconnected') throw e;
          r = await this.http<SeenResult>('POST', '/v1/notifications/seen', { seq: target });
        }
      } else {
        r = await this.http<SeenResult>('POST', '/v1/notifications/seen', { seq: target });
      }
    } catch (e) {
      // Not seen after all: the next visibility or notification tries again.
      if (this.seenSent === target) this.seenSent = this._seenSeq;
      throw e;
    }
    this.raiseSeen(r.seen_seq);
  }

  private isVisibleNow(): boolean {
    if (this.opts.isVisible) return this.opts.isVisible();
    return typeof document !== 'undefined' && document.visibilityState === 'visible';
  }

  /** Sends `seen` soon when this tab is visible (and, in `'panel'` mode, its panel open) and holds unseen notifications. */
  private maybeReportSeen(): void {
    const mode = this.opts.seen ?? 'visible';
    if (mode === false || !this.started || this.seenTimer) return;
    if (!this.isVisibleNow() || (mode === 'panel' && !this._inboxOpen)) return;
    if (this.highestHeld() <= Math.max(this._seenSeq, this.seenSent)) return;
    this.seenTimer = setTimeout(() => {
      this.seenTimer = null;
      if (!this.isLive()) return; // sent after the next `connected`
      if (!this.isVisibleNow() || ((this.opts.seen ?? 'visible') === 'panel' && !this._inboxOpen)) return;
      void this.markSeen().catch(() => undefined);
    }, this.opts.seenDelayMs ?? 300);
  }

  private onVisibility = () => this.maybeReportSeen();

  private highestHeld(): number {
    let m = 0;
    for (const n of this.byId.values()) if (n.seq > m) m = n.seq;
    return m;
  }

  private raiseSeen(seq: number): void {
    if (!(seq > this._seenSeq)) return;
    this._seenSeq = seq;
    if (this.seenSent < seq) this.seenSent = seq;
    this.emit('seen', seq);
    this.changed();
  }

  /** Applies an inbox action to the held notifications; returns the change to the unread count. */
  private applyLocal(action: InboxAction, ids: readonly string[], at = new Date().toISOString()): number {
    let delta = 0;
    for (const id of ids) {
      const n = this.byId.get(id);
      if (!n) continue;
      switch (action) {
        case 'archive':
          if (!n.read_at) delta -= 1;
          this.put({ ...n, archived_at: n.archived_at ?? at, read_at: n.read_at ?? at });
          break;
        case 'unarchive': {
          const { archived_at: _dropped, ...rest } = n;
          this.put(rest);
          break;
        }
        case 'read':
          if (!n.read_at) {
            delta -= 1;
            this.put({ ...n, read_at: at });
          }
          break;
        case 'unread':
          if (n.read_at && !n.archived_at) {
            delta += 1;
            this.put({ ...n, read_at: null });
          }
          break;
        case 'delete':
          if (!n.read_at) delta -= 1;
          this.byId.delete(id);
          this.sorted = null;
          break;
      }
    }
    return delta;
  }

  private async itemAction(action: InboxAction, id: string, failed: FailedAction): Promise<InboxResult> {
    const prev = this.byId.get(id);
    const v0 = this.version;
    const prevUnread = this._unread;
    if (prev) {
      const delta = this.applyLocal(action, [id]);
      this._unread = Math.max(0, this._unread + delta);
      this.countDirty = true;
      this.changed();
    }
    const path = `/v1/notifications/${encodeURIComponent(id)}`;
    const viaHttp = () =>
      action === 'delete' ? this.http<InboxResult>('DELETE', path) : this.http<InboxResult>('POST', `${path}/${action}`);
    try {
      let r: InboxResult;
      if (this.isLive()) {
        try {
          r = (await this.command({ type: 'inbox', action, ids: [id] })) as InboxResult;
        } catch (e) {
          if ((e as ClientError).code !== 'disconnected') throw e;
          r = await viaHttp();
        }
      } else {
        r = await viaHttp();
      }
      this.applyCount(r.unread_count, r.version);
      if (this._actionError?.action === failed) this._actionError = null;
      this.changed();
      return r;
    } catch (e) {
      if (prev) {
        this.put(prev);
        if (this.version === v0) this._unread = prevUnread;
      }
      this.failAction(failed, e);
      throw e;
    }
  }

  private tabRank(): number {
    if (this.opts.tabRank) return this.opts.tabRank();
    if (typeof document === 'undefined') return 0;
    const visible = document.visibilityState === 'visible';
    const focused = typeof document.hasFocus === 'function' && document.hasFocus();
    return defaultTabRank({ inboxOpen: this._inboxOpen, visible, focused });
  }

  /** Forget the last failed action (the user dismissed its message). */
  dismissActionError(): void {
    if (!this._actionError) return;
    this._actionError = null;
    this.changed();
  }

  /** An immutable view, replaced on every change (for React's useSyncExternalStore). */
  getSnapshot = (): HeraldSnapshot => {
    if (!this.snapshot) {
      this.snapshot = {
        state: this._state,
        notifications: this.notifications,
        unreadCount: this._unread,
        loading: this._loading,
        hasMore: this._hasMore,
        error: this._error,
        actionError: this._actionError,
        nodeId: this._nodeId,
        userId: this._userId,
        seenSeq: this._seenSeq,
        filter: this._filter,
      };
    }
    return this.snapshot;
  };

  subscribe = (cb: () => void): (() => void) => this.on('change', cb);

  // ---------------------------------------------------------------- lifecycle

  /** Start connecting (idempotent). Reconnects forever until `close()` or a terminal close. */
  connect(): void {
    if (this.started) return;
    if (!this.socketCtor()) throw new Error('HeraldClient: no WebSocket implementation available (pass the WebSocket option outside browsers)');
    this.started = true;
    this._error = null;
    if (this._userId) this.setupCoordinator(this._userId);
    const env = this.env();
    env.addEventListener?.('online', this.onOnline);
    env.addEventListener?.('offline', this.onOffline);
    if (typeof document !== 'undefined') document.addEventListener?.('visibilitychange', this.onVisibility);
    void this.open();
  }

  /** Stop for good: closes the socket, cancels timers and pending commands. */
  close(): void {
    this.started = false;
    this.clearTimers();
    const env = this.env();
    env.removeEventListener?.('online', this.onOnline);
    env.removeEventListener?.('offline', this.onOffline);
    if (typeof document !== 'undefined') document.removeEventListener?.('visibilitychange', this.onVisibility);
    if (this.seenTimer) clearTimeout(this.seenTimer);
    this.seenTimer = null;
    this.dropSocket(1000, 'normal');
    this.failPending({ code: 'closed', message: 'client closed' });
    this.coordinator?.close();
    this.coordinator = null;
    this.setState('closed');
  }

  /**
   * Try again now: after a terminal error (e.g. 4001) or `close()`, start over (a fresh token is
   * fetched); while waiting to reconnect, skip the backoff; when live but the list failed to
   * load, load it again.
   */
  retry(): void {
    if (!this.started || this._state === 'error') {
      this.started = false;
      this.attempt = 0;
      this.connect();
      return;
    }
    if (this.isLive()) {
      if (!this.firstPageFetched || this.errorFromLoad) void this.fetchPage(null, !this.firstPageFetched, false, this.firstPageFetched).catch(() => undefined);
      return;
    }
    if (this.ws) return; // a connection attempt is under way
    this.clearTimers();
    this.attempt = 0;
    void this.open();
  }

  // ---------------------------------------------------------------- commands

  /** Optimistically mark one read; over the socket when open (`mark_read`), else over HTTP. */
  async markRead(id: string): Promise<void> {
    const n = this.byId.get(id);
    if (n && n.read_at) return;
    const optimistic = this.stamp();
    const v0 = this.version;
    if (n) {
      this.put({ ...n, read_at: optimistic });
      this._unread = Math.max(0, this._unread - 1);
      this.countDirty = true;
      this.changed();
    }
    try {
      let result: MarkReadResult;
      if (this.isLive()) {
        try {
          result = (await this.command({ type: 'mark_read', id })) as MarkReadResult;
        } catch (e) {
          if ((e as ClientError).code !== 'disconnected') throw e;
          result = await this.http<MarkReadResult>('POST', `/v1/notifications/${encodeURIComponent(id)}/read`);
        }
      } else {
        result = await this.http<MarkReadResult>('POST', `/v1/notifications/${encodeURIComponent(id)}/read`);
      }
      const cur = this.byId.get(id);
      if (cur) this.put({ ...cur, read_at: result.read_at });
      this.applyCount(result.unread_count, result.version);
      if (this._actionError?.action === 'mark_read') this._actionError = null;
      this.changed();
    } catch (e) {
      // Roll back the optimistic change (unless the server told us otherwise meanwhile), say so,
      // and re-read the truth now and on the next connect.
      const cur = this.byId.get(id);
      if (cur && n && cur.read_at === optimistic) {
        this.put({ ...cur, read_at: null });
        if (this.version === v0) this._unread += 1;
      }
      this.failAction('mark_read', e);
      throw e;
    } finally {
      this.optimisticStamps.delete(optimistic);
    }
  }

  /** Optimistically mark everything held read (up to the highest seq held). */
  async markAllRead(): Promise<void> {
    const upTo = this.highestSeq > 0 ? this.highestSeq : null;
    const now = this.stamp();
    const marked: string[] = [];
    const prevUnread = this._unread;
    const v0 = this.version;
    for (const n of this.byId.values())
      if (!n.read_at && (upTo === null || n.seq <= upTo)) {
        this.put({ ...n, read_at: now });
        marked.push(n.id);
      }
    this._unread = 0;
    this.countDirty = true;
    this.changed();
    try {
      let result: MarkAllReadResult;
      const body = upTo === null ? {} : { up_to_seq: upTo };
      if (this.isLive()) {
        try {
          result = (await this.command({ type: 'mark_all_read', up_to_seq: upTo })) as MarkAllReadResult;
        } catch (e) {
          if ((e as ClientError).code !== 'disconnected') throw e;
          result = await this.http<MarkAllReadResult>('POST', '/v1/notifications/read-all', body);
        }
      } else {
        result = await this.http<MarkAllReadResult>('POST', '/v1/notifications/read-all', body);
      }
      this.applyCount(result.unread_count, result.version);
      if (this._actionError?.action === 'mark_all_read') this._actionError = null;
      this.changed();
    } catch (e) {
      // Undo exactly what we changed (a `read` event meanwhile wins), say so, reconcile later.
      for (const id of marked) {
        const cur = this.byId.get(id);
        if (cur && cur.read_at === now) this.put({ ...cur, read_at: null });
      }
      if (this.version === v0) this._unread = prevUnread;
      this.failAction('mark_all_read', e);
      throw e;
    } finally {
      this.optimisticStamps.delete(now);
    }
  }

  /** Load the next (older) page over HTTP. */
  async loadMore(): Promise<void> {
    if (this._loading || !this._hasMore) return;
    try {
      // Pages the client already holds (e.g. a large catch-up) add nothing: keep going (larger
      // pages, bounded) until something older arrives or the list ends.
      const before = this.byId.size;
      await this.fetchPage(this.firstPageFetched ? this.nextCursor : null, false);
      for (let i = 0; i < 20 && this.byId.size === before && this._hasMore; i++) await this.fetchPage(this.nextCursor, false, false, false, 100);
      if (this._actionError?.action === 'load_more') {
        this._actionError = null;
        this.changed();
      }
    } catch (e) {
      this._actionError = { action: 'load_more', ...toClientError(e) };
      this.changed();
      throw e;
    }
  }

  /** Re-read the unread count over HTTP (version-ordered). */
  async refreshUnreadCount(): Promise<void> {
    const r = await this.http<UnreadCount>('GET', '/v1/notifications/unread-count');
    this.applyCount(r.unread_count, r.version);
    this.changed();
  }

  // ---------------------------------------------------------------- connection internals

  private socketCtor(): WebSocketCtor | undefined {
    return this.WS ?? (globalThis as any).WebSocket;
  }

  private env() {
    const w: any = typeof window !== 'undefined' ? window : undefined;
    const e = this.opts.env;
    return {
      addEventListener: e?.addEventListener ?? w?.addEventListener?.bind(w),
      removeEventListener: e?.removeEventListener ?? w?.removeEventListener?.bind(w),
      isOnline: e?.isOnline ?? (() => (typeof navigator === 'undefined' || navigator.onLine !== false)),
    };
  }

  private onOnline = () => {
    if (!this.started || this._state === 'error') return;
    if (this.ws) return;
    this.clearTimers();
    this.attempt = 0;
    void this.open();
  };

  private onOffline = () => {
    if (!this.started || this._state === 'error') return;
    this.clearTimers();
    this.dropSocket(1000, 'offline');
    this.failPending({ code: 'disconnected', message: 'offline' });
    this.setState('offline');
  };

  private async open(): Promise<void> {
    if (!this.started) return;
    if (!this.env().isOnline()) {
      this.setState('offline');
      return;
    }
    this.setState(this.everConnected || this.attempt > 0 ? 'reconnecting' : 'connecting');
    let token: string;
    try {
      token = await this.opts.getToken();
    } catch (e) {
      this.setError({ code: 'token_provider', message: `token provider failed: ${errMessage(e)}` });
      this.scheduleReconnect();
      return;
    }
    if (!this.started || this.ws) return;
    this.token = token;
    let ws: WebSocketLike;
    try {
      const WS = this.socketCtor();
      if (!WS) throw new Error('no WebSocket implementation available');
      ws = new WS(this.opts.url);
    } catch (e) {
      this.setError({ code: 'socket', message: errMessage(e) });
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.authenticated = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const auth: ClientMessage = { type: 'auth', token, last_seq: this.highestSeq > 0 ? this.highestSeq : null };
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.onSocketClosed(ev.code, ev.reason);
    };
  }

  private onSocketClosed(code: number, reason: string): void {
    const wasAuthenticated = this.authenticated;
    this.ws = null;
    this.authenticated = false;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.failPending({ code: 'disconnected', message: `socket closed (${code})` });
    if (this.connectedAt && Date.now() - this.connectedAt >= STABLE_MS) this.attempt = 0;
    this.connectedAt = 0;
    if (!this.started) return;
    if (isTerminalClose(code)) {
      this.started = false;
      this._error = { code, message: reason || `closed with ${code}` };
      this.errorFromLoad = false;
      this.emit('error', this._error);
      this.setState('error');
      return;
    }
    if (!this.env().isOnline()) {
      this.setState('offline');
      return;
    }
    if (!wasAuthenticated) {
      // The attempt failed before `connected`: unreachable, refused, or closed during auth.
      this.setError({ code, message: reason || `could not connect to ${this.opts.url} (closed with ${code})` });
    }
    if (code === 4105) {
      // Draining: the load balancer sends us elsewhere; go now (jittered only lightly).
      this.setState('reconnecting');
      this.scheduleReconnect(Math.floor(this.random() * 250));
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(delayMs?: number): void {
    if (!this.started) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const delay = delayMs ?? backoffDelay(this.attempt, this.opts.backoff, this.random);
    this.attempt += 1;
    this.setState('reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay);
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.reconnectTimer = null;
    this.drainTimer = null;
  }

  private dropSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    this.authenticated = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(code, reason);
      } catch {
        /* ignore */
      }
    }
  }

  private isLive(): boolean {
    return !!this.ws && this.authenticated && this.ws.readyState === OPEN;
  }

  private command(msg: Command): Promise<AckResult> {
    if (!this.isLive()) return Promise.reject<AckResult>({ code: 'disconnected', message: 'not connected' });
    const rid = ++this.rid;
    const timeout = this.opts.commandTimeoutMs ?? 10_000;
    return new Promise<AckResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject({ code: 'timeout', message: `no answer to ${msg.type} within ${timeout} ms` });
      }, timeout);
      this.pending.set(rid, { resolve, reject, timer });
      // rid is a JSON number (the generated Rid type says bigint; see the Rust note in README).
      this.ws?.send(JSON.stringify({ ...msg, rid }));
    });
  }

  private failPending(err: ClientError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  // ---------------------------------------------------------------- events

  private handle(msg: ServerMessage): void {
    switch (msg.type) {
      case 'connected': {
        this.authenticated = true;
        this.connectedAt = Date.now();
        this.everConnected = true;
        if (!this.errorFromLoad) this._error = null;
        this._nodeId = msg.node_id;
        if (!this._userId) {
          this._userId = msg.user_id;
          this.setupCoordinator(msg.user_id);
        }
        this.catchingUp = true;
        // `connected` is the server's count right now: adopt it even when its version is one we
        // have seen (an optimistic change may have moved the local count without a version).
        const seenVersion = this.version;
        const heldUnread = this.heldUnread();
        this.version = -1;
        this.applyCount(msg.unread_count, msg.version);
        this.raiseSeen(msg.seen_seq);
        this.setState('open');
        this.emit('connected', { user_id: msg.user_id, node_id: msg.node_id, session_id: msg.session_id });
        if (!this.firstPageFetched) void this.fetchPage(null, true).catch(() => undefined);
        else if (this.needsReconcile || this.errorFromLoad || msg.version !== seenVersion || heldUnread > msg.unread_count)
          // Something changed while we were away (e.g. reads made elsewhere, which catch-up does
          // not replay): re-read the read state of the rows held, newest first, so that the
          // badge and the list agree.
          void this.fetchPage(null, false, false, true, Math.min(100, Math.max(this.opts.pageSize ?? 20, this.byId.size))).catch(() => undefined);
        this.changed();
        this.maybeReportSeen();
        break;
      }
      case 'notifications:batch': {
        for (const n of msg.notifications) this.add(n, 'catchup');
        if (msg.unread_count !== null && msg.version !== null) this.applyCount(msg.unread_count, msg.version);
        if (msg.complete) {
          this.catchingUp = false;
          if (this.firstPageFetched) this.initialLoad = false;
        }
        this.changed();
        break;
      }
      case 'notification': {
        this.add(msg.notification, 'live');
        this.applyCount(msg.unread_count, msg.version);
        this.changed();
        break;
      }
      case 'inbox': {
        this.applyLocal(msg.action, msg.ids);
        this.applyCount(msg.unread_count, msg.version);
        this.emit('lifecycle', { action: msg.action, ids: msg.ids });
        this.changed();
        break;
      }
      case 'seen': {
        this.raiseSeen(msg.seen_seq);
        break;
      }
      case 'global_notification':
        this.emit('global', msg.notification);
        break;
      case 'read': {
        const ids = new Set(msg.ids);
        for (const n of this.byId.values()) {
          if (n.read_at && !this.optimisticStamps.has(n.read_at)) continue;
          if (ids.has(n.id) || (msg.up_to_seq !== null && n.seq <= msg.up_to_seq)) this.put({ ...n, read_at: msg.read_at });
        }
        this.applyCount(msg.unread_count, msg.version);
        this.emit('read', { ids: msg.ids, up_to_seq: msg.up_to_seq, read_at: msg.read_at });
        this.changed();
        break;
      }
      case 'resync': {
        if (msg.reason === 'cursor_ahead') {
          this.byId.clear();
          this.sorted = null;
          this.highestSeq = msg.latest_seq;
        } else {
          this.highestSeq = Math.max(this.highestSeq, msg.latest_seq);
        }
        void this.fetchPage(null, true, true).catch(() => undefined);
        this.changed();
        break;
      }
      case 'ack': {
        const p = typeof msg.rid === 'number' || typeof msg.rid === 'bigint' ? this.pending.get(Number(msg.rid)) : undefined;
        if (p) {
          this.pending.delete(Number(msg.rid));
          clearTimeout(p.timer);
          p.resolve(msg.result);
        }
        break;
      }
      case 'error': {
        const err: ClientError = { code: msg.code, message: msg.message };
        const p = msg.rid !== null ? this.pending.get(Number(msg.rid)) : undefined;
        if (p) {
          this.pending.delete(Number(msg.rid));
          clearTimeout(p.timer);
          p.reject(err);
        } else {
          this.emit('error', err);
        }
        break;
      }
      case 'reconnect': {
        // Draining: reconnect at a random time within after_ms (before the 4105 close).
        if (this.drainTimer) break;
        const delay = Math.floor(this.random() * Math.max(0, msg.after_ms));
        this.drainTimer = setTimeout(() => {
          this.drainTimer = null;
          if (!this.started) return;
          this.dropSocket(1000, 'reconnect');
          this.failPending({ code: 'disconnected', message: 'reconnecting' });
          this.attempt = 0;
          void this.open();
        }, delay);
        break;
      }
      case 'token_expiring': {
        void this.refreshToken();
        break;
      }
    }
  }

  private async refreshToken(): Promise<void> {
    try {
      const token = await this.opts.getToken();
      this.token = token;
      await this.command({ type: 'refresh', token });
    } catch (e) {
      this.reportError(e);
    }
  }

  // ---------------------------------------------------------------- store

  private setupCoordinator(userId: string): void {
    if (this.opts.crossTab === false || this.coordinator) return;
    this.coordinator = new ToastCoordinator(userId, 120, this.opts.channelFactory);
  }

  /** A unique local `read_at` for an optimistic change. */
  private stamp(): string {
    let s = new Date().toISOString();
    while (this.optimisticStamps.has(s)) s = new Date(Date.parse(s) + 1).toISOString();
    this.optimisticStamps.add(s);
    return s;
  }

  private put(n: Notification): void {
    this.byId.set(n.id, n);
    this.sorted = null;
  }

  /** Adds a notification unless already held (dedup by id). */
  private add(n: Notification, source: NotificationSource): boolean {
    if (n.seq > this.highestSeq) this.highestSeq = n.seq;
    const existing = this.byId.get(n.id);
    if (existing) {
      // Keep the most-read state we know of.
      if (!existing.read_at && n.read_at) this.put({ ...existing, read_at: n.read_at });
      return false;
    }
    this.put(n);
    this.maybeReportSeen();
    const initial = this.initialLoad;
    this.emit('notification', n, { source, initial });
    // Toast: live events always; catch-up only after the first load (i.e. missed while away).
    if (!n.read_at && (source === 'live' || (source === 'catchup' && !initial))) {
      const show = () => {
        // Not while the list is on screen, nor once it was read meanwhile (here or elsewhere).
        if (this._inboxOpen || this.byId.get(n.id)?.read_at) return;
        this.emit('toast', n);
      };
      if (this.coordinator) {
        const c = this.coordinator;
        void c.claim(n.id, this.tabRank()).then((won) => {
          if (won && this.started) show();
        });
      } else {
        show();
      }
    }
    return true;
  }

  private heldUnread(): number {
    let k = 0;
    for (const n of this.byId.values()) if (!n.read_at) k++;
    return k;
  }

  private applyCount(count: number, version: number): void {
    if (version > this.version || (version === this.version && this.countDirty)) {
      this.version = version;
      this._unread = count;
      this.countDirty = false;
    }
  }

  /**
   * Fetch a page. `replace` drops the local list first (resync); `reconcile` takes the server's
   * read state for notifications already held (after a failed optimistic change).
   */
  private async fetchPage(cursor: string | null, initial: boolean, replace = false, reconcile = false, limit?: number): Promise<void> {
    this._loading = true;
    this.changed();
    try {
      const q = new URLSearchParams({ limit: String(limit ?? this.opts.pageSize ?? 20) });
      if (cursor) q.set('before', cursor);
      const f = this._filter;
      if (f.archived !== undefined && f.archived !== null) q.set('archived', String(f.archived));
      if (f.unread) q.set('unread_only', 'true');
      if (f.type) q.set('type', f.type);
      const page = await this.http<NotificationPage>('GET', `/v1/notifications?${q}`);
      if (replace) {
        this.byId.clear();
        this.sorted = null;
      }
      for (const n of page.notifications) {
        const held = reconcile ? this.byId.get(n.id) : undefined;
        if (held) {
          if (held.read_at !== n.read_at) this.put({ ...held, read_at: n.read_at });
        } else this.add(n, 'http');
      }
      if (reconcile) this.needsReconcile = false;
      if (!cursor) this.highestSeq = Math.max(this.highestSeq, page.latest_seq);
      if (this.version < 0) this._unread = page.unread_count;
      if (!reconcile || !this.firstPageFetched) {
        // A reconcile re-reads rows already held: the paging cursor stays where it was.
        this.nextCursor = page.next_cursor;
        this._hasMore = page.next_cursor !== null;
      }
      this.firstPageFetched = true;
      if (initial && !this.catchingUp) this.initialLoad = false;
      if (!cursor && this.errorFromLoad) {
        this._error = null;
        this.errorFromLoad = false;
      }
    } catch (e) {
      const err = this.reportError(e);
      if (!cursor) {
        // The list itself failed to load: an error state, not an empty inbox.
        this._error = err;
        this.errorFromLoad = true;
      }
      throw e;
    } finally {
      this._loading = false;
      this.changed();
    }
  }

  private async http<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let token = this.token;
    if (!token) {
      try {
        token = await this.opts.getToken();
      } catch (e) {
        throw { code: 'token_provider', message: `token provider failed: ${errMessage(e)}` } satisfies ClientError;
      }
    }
    this.token = token;
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await this.fetchFn(`${this.apiUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw { code: 'network', message: `network error: ${errMessage(e)}` } satisfies ClientError;
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const eb = json as ErrorBody | null;
      if (res.status === 401) this.token = null; // fetch a fresh one next time
      const err: ClientError = { code: eb?.code ?? res.status, message: eb?.message ?? `HTTP ${res.status}` };
      if (eb?.field) err.field = eb.field;
      throw err;
    }
    return json as T;
  }

  // ---------------------------------------------------------------- preferences

  /** The user's fallback preferences (`GET /v1/me/preferences`); `{channels: {}}` when none are stored. */
  getPreferences(): Promise<Preferences> {
    return this.http<Preferences>('GET', '/v1/me/preferences');
  }

  /**
   * Replace the user's fallback preferences (`PUT /v1/me/preferences`); resolves with what is
   * now stored. A refused one rejects with `{code: 'validation_failed', field, message}` (the
   * server's field, e.g. `quiet_hours.time_zone`) and nothing is stored.
   */
  setPreferences(prefs: Preferences): Promise<Preferences> {
    return this.http<Preferences>('PUT', '/v1/me/preferences', prefs);
  }

  /** What a preferences form can offer: the server's types, channels and defaults (`GET /v1/me/preferences/schema`). */
  getPreferencesSchema(): Promise<PreferencesSchema> {
    return this.http<PreferencesSchema>('GET', '/v1/me/preferences/schema');
  }

  // ---------------------------------------------------------------- notify

  private reportError(e: unknown): ClientError {
    const err = toClientError(e);
    this.emit('error', err);
    return err;
  }

  /** A connection problem the UI shows (with a Retry) until the next successful connect. */
  private setError(err: ClientError): void {
    this._error = err;
    this.errorFromLoad = false;
    this.emit('error', err);
    this.changed();
  }

  /** A user action failed after its optimistic change was undone: tell the user, re-read the truth. */
  private failAction(action: FailedAction, e: unknown): void {
    const err = this.reportError(e);
    this._actionError = { action, code: err.code, message: err.message };
    this.needsReconcile = true;
    this.countDirty = true;
    this.changed();
    void this.refreshUnreadCount().catch(() => undefined);
  }

  private setState(s: ConnectionState): void {
    if (s === this._state) return;
    const prev = this._state;
    this._state = s;
    this.emit('state', s, prev);
    this.changed();
  }

  private changed(): void {
    this.snapshot = null;
    this.emit('change');
  }
}

/**
 * The default cross-tab rank: an open panel counts only in a visible tab (a panel left open in
 * a hidden tab must not swallow the toasts of the tab the user is looking at).
 */
export function defaultTabRank(t: { inboxOpen: boolean; visible: boolean; focused: boolean }): number {
  if (!t.visible) return 0;
  if (t.inboxOpen) return 3;
  return t.focused ? 2 : 1;
}

/** Whether a notification matches a list filter. */
export function matchesFilter(n: Notification, f: ListFilter): boolean {
  if (f.archived === true && !n.archived_at) return false;
  if (f.archived === false && n.archived_at) return false;
  if (f.unread && n.read_at) return false;
  if (f.type && n.type !== f.type) return false;
  return true;
}

export function deriveApiUrl(wsUrl: string): string {
  const u = new URL(wsUrl, typeof location !== 'undefined' ? location.href : undefined);
  u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  return `${u.protocol}//${u.host}`;
}

function toClientError(e: unknown): ClientError {
  return e && typeof e === 'object' && 'code' in e && 'message' in e
    ? { code: (e as ClientError).code, message: (e as ClientError).message }
    : { code: 'internal', message: errMessage(e) };
}

function errMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}

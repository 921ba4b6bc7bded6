import { createContext, createElement, useCallback, useContext, useEffect, useMemo, useState, useSyncExternalStore, type ReactNode } from 'react';
import { HeraldClient, type ActionError, type ConnectionState, type HeraldClientOptions, type ClientError, type ListFilter, type Notification } from 'herald-notify-client';

const HeraldContext = createContext<HeraldClient | null>(null);

/** Makes a client available to `useNotifications()`, `<NotificationBell />` and `<Toaster />`. */
export function HeraldProvider({ client, children }: { client: HeraldClient; children?: ReactNode }) {
  return createElement(HeraldContext.Provider, { value: client }, children);
}

export function useHeraldClient(explicit?: HeraldClient | null): HeraldClient {
  const ctx = useContext(HeraldContext);
  const c = explicit ?? ctx;
  if (!c) throw new Error('Herald: pass a client or wrap the tree in <HeraldProvider client={...}>');
  return c;
}

export type UseNotificationsOptions =
  | { client?: HeraldClient | null; autoConnect?: boolean; filter?: ListFilter }
  | (HeraldClientOptions & { client?: undefined; autoConnect?: boolean; filter?: ListFilter });

export interface UseNotificationsResult {
  notifications: readonly Notification[];
  unreadCount: number;
  isConnected: boolean;
  state: ConnectionState;
  loading: boolean;
  error: ClientError | null;
  /** The last user action that failed (its optimistic change was undone), until dismissed. */
  actionError: ActionError | null;
  dismissActionError: () => void;
  /** Try again now (after an error, or to skip the reconnect backoff). */
  retry: () => void;
  hasMore: boolean;
  nodeId: string | null;
  /** The seen watermark (notifications with `seq <= seenSeq` were shown in a visible tab). */
  seenSeq: number;
  /** The list's filter (`client.setFilter`). */
  filter: ListFilter;
  markAsRead: (id: string) => Promise<void>;
  markAllAsRead: () => Promise<void>;
  loadMore: () => Promise<void>;
  client: HeraldClient;
}

/**
 * Live notifications for the signed-in user. Either pass `{ client }` (or use a
 * `<HeraldProvider>`), or pass client options (`url`, `getToken`, …) and the hook owns a client
 * for the component's lifetime.
 */
export function useNotifications(options: UseNotificationsOptions = {}): UseNotificationsResult {
  const ctx = useContext(HeraldContext);
  const ownOpts = 'url' in options && options.url ? (options as HeraldClientOptions) : null;
  const owned = useMemo(
    () => (ownOpts ? new HeraldClient(ownOpts) : null),
    // Re-create only when the target or the user changes; getToken may be an inline closure.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [ownOpts?.url, ownOpts?.apiUrl, ownOpts?.userId],
  );
  const client = owned ?? options.client ?? ctx;
  if (!client) throw new Error('useNotifications: pass { client }, client options, or use <HeraldProvider>');

  const autoConnect = options.autoConnect ?? true;
  // Applied before connecting, so the first page fetched is already the filtered one.
  const filterKey = options.filter ? JSON.stringify(options.filter) : null;
  useEffect(() => {
    if (filterKey) client.setFilter(JSON.parse(filterKey) as ListFilter);
  }, [client, filterKey]);
  useEffect(() => {
    if (autoConnect) client.connect();
    return () => {
      if (owned) owned.close();
    };
  }, [client, owned, autoConnect]);

  const snap = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  const markAsRead = useCallback((id: string) => client.markRead(id).catch(() => undefined), [client]);
  const markAllAsRead = useCallback(() => client.markAllRead().catch(() => undefined), [client]);
  const loadMore = useCallback(() => client.loadMore().catch(() => undefined), [client]);
  const dismissActionError = useCallback(() => client.dismissActionError(), [client]);
  const retry = useCallback(() => client.retry(), [client]);

  return {
    notifications: snap.notifications,
    unreadCount: snap.unreadCount,
    isConnected: snap.state === 'open',
    state: snap.state,
    loading: snap.loading,
    error: snap.error,
    actionError: snap.actionError,
    dismissActionError,
    retry,
    hasMore: snap.hasMore,
    nodeId: snap.nodeId,
    seenSeq: snap.seenSeq,
    filter: snap.filter,
    markAsRead,
    markAllAsRead,
    loadMore,
    client,
  };
}

/** Re-render periodically so relative times stay fresh. */
export function useNow(intervalMs = 30_000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(t);
  }, [intervalMs]);
  return now;
}

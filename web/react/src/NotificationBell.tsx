import { useCallback, useEffect, useId, useRef, useState, type FocusEvent, type KeyboardEvent } from 'react';
import type { ActionError, ClientError, ConnectionState, HeraldClient, Notification } from 'herald-notify-client';
import { badgeText, describeError, formatRelative, iconFor, safeLink } from './format';
import { useNotifications, useNow } from './useNotifications';

export interface NotificationBellViewProps {
  notifications: readonly Notification[];
  unreadCount: number;
  state: ConnectionState;
  loading?: boolean;
  hasMore?: boolean;
  onMarkRead: (id: string) => void;
  onMarkAllRead: () => void;
  onLoadMore?: () => void;
  /** A user action that failed and was undone: shown in the panel until dismissed. */
  actionError?: ActionError | null;
  onDismissActionError?: () => void;
  /** A connection or loading error: shown with its reason and a Retry action. */
  error?: ClientError | null;
  onRetry?: () => void;
  /** Where "View all notifications" goes; without it the panel has no such link. */
  viewAllHref?: string;
  /** Navigation for a clicked notification's link (default: `window.location.assign`). */
  onNavigate?: (link: string) => void;
  /** Start open (tests, stories). */
  defaultOpen?: boolean;
  /**
   * Rows rendered at first, and added per "Load older" (default 50): a user with 1,000 pending
   * notifications gets 50 rows, not 1,000. Held rows are revealed before older ones are fetched.
   * At most two pages are in the DOM at once; "Show newer" pages back up.
   */
  pageSize?: number;
  /** Called when the panel opens or closes (the live bell tells the client: no toasts while open). */
  onOpenChange?: (open: boolean) => void;
}

const PENDING_HINT: Record<ConnectionState, string> = {
  idle: 'Notifications will appear once connected.',
  connecting: 'Fetching your notifications.',
  open: 'Fetching your notifications.',
  reconnecting: 'The connection dropped; trying again.',
  offline: 'You are offline. Notifications will arrive when you are back online.',
  closed: 'Not connected to notifications.',
  error: 'Not connected to notifications.',
};

const ACTION_FAILED: Record<ActionError['action'], string> = {
  mark_read: 'Couldn’t mark the notification as read; it is unread again.',
  mark_all_read: 'Couldn’t mark all as read; your notifications are unread again.',
  load_more: 'Couldn’t load older notifications.',
};

const STATE_LABEL: Readonly<Record<ConnectionState, string>> = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  open: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  closed: 'Disconnected',
  error: 'Connection error',
};

/** The words the bell uses for a connection state ("Live", "Reconnecting…", …): use them elsewhere too. */
export function connectionStateLabel(state: ConnectionState): string {
  return STATE_LABEL[state];
}

export function BellIcon({ size = 20 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" fill="none" aria-hidden="true" focusable="false">
      <path
        d="M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9Z"
        stroke="currentColor"
        strokeWidth="1.8"
        strokeLinecap="round"
        strokeLinejoin="round"
      />
      <path d="M10.3 21a1.94 1.94 0 0 0 3.4 0" stroke="currentColor" strokeWidth="1.8" strokeLinecap="round" />
    </svg>
  );
}

/** The bell, badge and dropdown, driven entirely by props (see `NotificationBell` for the live one). */
export function NotificationBellView(props: NotificationBellViewProps) {
  const { notifications, unreadCount, state, loading, hasMore, onMarkRead, onMarkAllRead, onLoadMore } = props;
  const [open, setOpen] = useState(!!props.defaultOpen);
  const rootRef = useRef<HTMLDivElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const listRef = useRef<HTMLUListElement>(null);
  const panelId = useId();
  const titleId = useId();
  const now = useNow();
  const focusFirstOnOpen = useRef(false);
  const onOpenChange = props.onOpenChange;

  useEffect(() => {
    onOpenChange?.(open);
  }, [open, onOpenChange]);
  useEffect(() => () => onOpenChange?.(false), [onOpenChange]);

  const close = useCallback((restoreFocus: boolean) => {
    setOpen(false);
    if (restoreFocus) buttonRef.current?.focus();
  }, []);

  // Click outside closes.
  useEffect(() => {
    if (!open) return;
    const onDown = (e: MouseEvent | TouchEvent) => {
      if (rootRef.current && !rootRef.current.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('mousedown', onDown);
    document.addEventListener('touchstart', onDown);
    return () => {
      document.removeEventListener('mousedown', onDown);
      document.removeEventListener('touchstart', onDown);
    };
  }, [open]);

  // Escape closes (anywhere while open).
  useEffect(() => {
    if (!open) return;
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        close(true);
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [open, close]);

  useEffect(() => {
    if (open && focusFirstOnOpen.current) {
      focusFirstOnOpen.current = false;
      items()[0]?.focus();
    }
  });

  const pageSize = Math.max(1, props.pageSize ?? 50);
  const [limit, setLimit] = useState(pageSize);
  useEffect(() => {
    if (!open) setLimit(pageSize); // a closed panel keeps no long list around
  }, [open, pageSize]);
  // The rendered window: rows [start, limit), at most two pages, so the DOM stays bounded however
  // far back the user pages.
  const start = Math.max(0, Math.min(limit, notifications.length) - 2 * pageSize);
  const shown = notifications.slice(start, limit);
  const moreHeld = notifications.length > limit;
  // After "Load older" (or "Show newer"): move focus to the first row revealed once it is
  // rendered (the button may go away), so keyboard users keep their place instead of <body>.
  const focusAfterLoad = useRef<number | null>(null);
  useEffect(() => {
    const idx = focusAfterLoad.current;
    if (idx === null || loading) return;
    focusAfterLoad.current = null;
    const rows = Array.from(listRef.current?.querySelectorAll<HTMLElement>('[data-testid="herald-item"]') ?? []);
    rows[idx - start]?.focus();
  }, [notifications, loading, limit, start]);
  const showNewer = () => {
    const next = Math.max(pageSize, limit - pageSize);
    focusAfterLoad.current = Math.max(0, Math.min(next, notifications.length) - 2 * pageSize);
    setLimit(next);
  };
  const loadOlder = () => {
    if (loading) return;
    if (moreHeld) {
      focusAfterLoad.current = limit;
      setLimit(limit + pageSize);
      return;
    }
    if (!onLoadMore) return;
    focusAfterLoad.current = notifications.length;
    setLimit(notifications.length + pageSize);
    onLoadMore();
  };

  // Focus leaving the bell and its panel (Tab / Shift+Tab out) closes the panel.
  const onRootBlur = (e: FocusEvent<HTMLDivElement>) => {
    const next = e.relatedTarget as Node | null;
    if (open && next && rootRef.current && !rootRef.current.contains(next)) setOpen(false);
  };

  const items = () => Array.from(listRef.current?.querySelectorAll<HTMLElement>('[role="menuitem"]') ?? []);

  const onButtonKey = (e: KeyboardEvent<HTMLButtonElement>) => {
    if (e.key === 'ArrowDown' || ((e.key === 'Enter' || e.key === ' ') && !open)) {
      if (e.key === 'ArrowDown' || e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        focusFirstOnOpen.current = true;
        if (open) items()[0]?.focus();
        else setOpen(true);
      }
    }
  };

  const onListKey = (e: KeyboardEvent<HTMLUListElement>) => {
    const all = items();
    const i = all.indexOf(document.activeElement as HTMLElement);
    let next = -1;
    if (e.key === 'ArrowDown') next = i < 0 ? 0 : Math.min(all.length - 1, i + 1);
    else if (e.key === 'ArrowUp') next = i <= 0 ? 0 : i - 1;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = all.length - 1;
    if (next >= 0 && all[next]) {
      e.preventDefault();
      all[next].focus();
    }
  };

  const activate = (n: Notification) => {
    if (!n.read_at) onMarkRead(n.id);
    const link = safeLink(n.link);
    if (link) {
      // The panel closes: give focus back to the bell rather than losing it to <body>.
      close(true);
      (props.onNavigate ?? ((l: string) => window.location.assign(l)))(link);
    }
  };

  const error = props.error ?? null;
  const retryButton = props.onRetry ? (
    <button type="button" className="hn-button" onClick={() => props.onRetry?.()} data-testid="herald-retry">
      Retry
    </button>
  ) : null;

  const label = `Notifications (${unreadCount} unread)`;
  const dotClass = state === 'open' ? 'is-live' : state === 'error' || state === 'closed' ? 'is-down' : state === 'offline' ? 'is-offline' : 'is-pending';

  return (
    <div className="hn-bell" ref={rootRef} data-state={state} onBlur={onRootBlur}>
      <button
        ref={buttonRef}
        type="button"
        className={`hn-bell__button${open ? ' is-open' : ''}`}
        aria-label={label}
        aria-haspopup="dialog"
        aria-expanded={open}
        aria-controls={open ? panelId : undefined}
        title={`${label} · ${STATE_LABEL[state]}`}
        onClick={() => setOpen((o) => !o)}
        onKeyDown={onButtonKey}
        data-testid="herald-bell"
      >
        <BellIcon />
        {unreadCount > 0 && (
          <span className="hn-badge" data-testid="herald-badge" aria-hidden="true">
            {badgeText(unreadCount)}
          </span>
        )}
        <span className={`hn-conn ${dotClass}`} data-testid="herald-conn" aria-hidden="true" />
      </button>

      {open && (
        <div className="hn-panel" id={panelId} role="dialog" aria-modal="false" aria-labelledby={titleId} data-testid="herald-panel">
          <div className="hn-panel__header">
            <h2 className="hn-panel__title" id={titleId}>
              Notifications
            </h2>
            <span className={`hn-panel__status ${dotClass}`}>
              <span className={`hn-conn-inline ${dotClass}`} aria-hidden="true" />
              {STATE_LABEL[state]}
            </span>
            <button type="button" className="hn-link-button" onClick={() => onMarkAllRead()} disabled={unreadCount === 0}>
              Mark all as read
            </button>
          </div>

          {props.actionError && (
            <div className="hn-alert" role="alert" data-testid="herald-action-error">
              <span className="hn-alert__text">
                {ACTION_FAILED[props.actionError.action]} <span className="hn-alert__reason">({props.actionError.message})</span>
              </span>
              {props.onDismissActionError && (
                <button type="button" className="hn-link-button" onClick={() => props.onDismissActionError?.()}>
                  Dismiss
                </button>
              )}
            </div>
          )}

          {error && notifications.length > 0 && (
            <div className="hn-alert is-error" role="alert" data-testid="herald-error">
              <span className="hn-alert__text">
                {describeError(error)} <span className="hn-alert__reason">({error.message})</span>
              </span>
              {retryButton}
            </div>
          )}

          {notifications.length === 0 ? (
            error ? (
              <div className="hn-empty hn-status is-error" role="alert" data-testid="herald-error">
                <p className="hn-empty__title">{describeError(error)}</p>
                <p className="hn-empty__hint hn-status__reason">{error.message}</p>
                {retryButton}
              </div>
            ) : state === 'open' && !loading ? (
              <div className="hn-empty" data-testid="herald-empty">
                <div className="hn-empty__icon" aria-hidden="true">
                  <BellIcon size={28} />
                </div>
                <p className="hn-empty__title">No notifications yet</p>
                <p className="hn-empty__hint">When something happens, you'll see it here.</p>
              </div>
            ) : (
              <div className="hn-empty hn-status" role="status" data-testid="herald-pending">
                <p className="hn-empty__title">{state === 'open' ? 'Loading…' : STATE_LABEL[state]}</p>
                <p className="hn-empty__hint">{PENDING_HINT[state]}</p>
                {(state === 'offline' || state === 'reconnecting' || state === 'closed') && retryButton}
              </div>
            )
          ) : (
            <ul className="hn-list" role="menu" aria-label="Notifications" ref={listRef} onKeyDown={onListKey}>
              {start > 0 && (
                <li role="none" className="hn-more">
                  <button type="button" role="menuitem" tabIndex={-1} className="hn-link-button" onClick={showNewer} data-testid="herald-show-newer">
                    Show newer
                  </button>
                </li>
              )}
              {shown.map((n) => {
                const unread = !n.read_at;
                return (
                  <li
                    key={n.id}
                    role="menuitem"
                    tabIndex={-1}
                    className={`hn-item${unread ? ' is-unread' : ''}`}
                    data-testid="herald-item"
                    data-id={n.id}
                    data-unread={unread ? 'true' : 'false'}
                    aria-label={`${unread ? 'Unread: ' : ''}${n.title}${n.body ? `. ${n.body}` : ''}. ${formatRelative(n.created_at, now)}`}
                    onClick={() => activate(n)}
                    onKeyDown={(e) => {
                      if (e.key === 'Enter' || e.key === ' ') {
                        e.preventDefault();
                        activate(n);
                      }
                    }}
                  >
                    <span className="hn-item__icon" aria-hidden="true">
                      {n.avatar_url ? <img src={n.avatar_url} alt="" /> : iconFor(n.type)}
                    </span>
                    <span className="hn-item__content">
                      <span className="hn-item__title">{n.title}</span>
                      {n.body && <span className="hn-item__body">{n.body}</span>}
                      <time className="hn-item__time" dateTime={n.created_at} title={new Date(n.created_at).toLocaleString()}>
                        {formatRelative(n.created_at, now)}
                      </time>
                    </span>
                    {unread && <span className="hn-item__dot" aria-hidden="true" />}
                  </li>
                );
              })}
              {(moreHeld || (hasMore && onLoadMore)) && (
                <li role="none" className="hn-more">
                  <button
                    type="button"
                    role="menuitem"
                    tabIndex={-1}
                    className="hn-link-button"
                    onClick={loadOlder}
                    aria-disabled={loading || undefined}
                    data-testid="herald-load-more"
                  >
                    {loading ? 'Loading…' : 'Load older'}
                  </button>
                </li>
              )}
            </ul>
          )}

          {props.viewAllHref && (
            <div className="hn-panel__footer">
              <a className="hn-view-all" href={props.viewAllHref}>
                View all notifications
              </a>
            </div>
          )}
        </div>
      )}
    </div>
  );
}

export interface NotificationBellProps extends Partial<Pick<NotificationBellViewProps, 'viewAllHref' | 'onNavigate' | 'defaultOpen' | 'pageSize'>> {
  client?: HeraldClient;
}

/** The live bell: reads the client from props or `<HeraldProvider>`. */
export function NotificationBell({ client, ...rest }: NotificationBellProps) {
  const h = useNotifications({ client, autoConnect: true });
  const c = h.client;
  const onOpenChange = useCallback((open: boolean) => c.setInboxOpen(open), [c]);
  return (
    <NotificationBellView
      {...rest}
      notifications={h.notifications}
      unreadCount={h.unreadCount}
      state={h.state}
      loading={h.loading}
      hasMore={h.hasMore}
      actionError={h.actionError}
      error={h.error}
      onOpenChange={onOpenChange}
      onRetry={h.retry}
      onDismissActionError={h.dismissActionError}
      onMarkRead={(id) => void h.markAsRead(id)}
      onMarkAllRead={() => void h.markAllAsRead()}
      onLoadMore={() => void h.loadMore()}
    />
  );
}

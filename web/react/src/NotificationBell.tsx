import { useCallback, useEffect, useId, useRef, useState, type FocusEvent, type KeyboardEvent, type MouseEvent as ReactMouseEvent, type ReactNode } from 'react';
import type { ActionError, ClientError, ConnectionState, HeraldClient, ListFilter, Notification } from 'herald-notify-client';
import { badgeText, formatRelative, iconFor, safeLink } from './format';
import { defaultLabels, resolveLabels, type HeraldLabels } from './labels';
import { NotificationPreferences } from './NotificationPreferences';
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
  /** Controlled open state: the panel follows this prop; ask for changes through `onOpenChange`. */
  open?: boolean;
  /** Where the panel hangs from the bell: under it, aligned to its end (default) or start edge. */
  placement?: 'bottom-end' | 'bottom-start';
  /** 'auto' (default) follows the system's light/dark preference; 'light' or 'dark' forces one. */
  theme?: 'auto' | 'light' | 'dark';
  /** Words (see `HeraldLabels`); missing ones fall back to English. */
  labels?: Partial<HeraldLabels>;
  /** BCP 47 locale for times and dates (`Intl`); default: the English short forms. */
  locale?: string;
  /** Custom row content (inside the row's button, which keeps activation and focus). */
  renderItem?: (n: Notification, ctx: { unread: boolean; time: string }) => ReactNode;
  /** Custom empty state (live, nothing to show). */
  renderEmpty?: () => ReactNode;
  /** Per-row actions: each shows its button when given (archive / unarchive, mark unread, delete). */
  onArchive?: (id: string) => void;
  onUnarchive?: (id: string) => void;
  onMarkUnread?: (id: string) => void;
  onDelete?: (id: string) => void;
  /** The list's filter; with `onFilterChange` the panel shows Inbox / Unread / Archived buttons. */
  filter?: ListFilter;
  onFilterChange?: (filter: ListFilter) => void;
  /** Notification types offered in the panel's type filter (none: no type filter). */
  types?: readonly string[];
  /** Custom bell content (inside the bell button; its accessible name stays the labels' `bell`). */
  renderBell?: (ctx: { unreadCount: number; state: ConnectionState; open: boolean }) => ReactNode;
  /**
   * The panel's settings view (e.g. `<NotificationPreferences showTitle={false} />`): when given,
   * a settings button in the panel header swaps the list for it, with a Back button.
   */
  renderSettings?: (ctx: { titleId: string }) => ReactNode;
}

export function GearIcon({ size = 16 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" fill="none" aria-hidden="true" focusable="false">
      <circle cx="12" cy="12" r="3" stroke="currentColor" strokeWidth="1.8" />
      <path
        d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1Z"
        stroke="currentColor"
        strokeWidth="1.5"
        strokeLinejoin="round"
      />
    </svg>
  );
}

/** The words the bell uses for a connection state ("Live", "Reconnecting…", …): use them elsewhere too. */
export function connectionStateLabel(state: ConnectionState, labels?: Partial<HeraldLabels>): string {
  return (labels?.states ?? defaultLabels.states)[state] ?? defaultLabels.states[state];
}

/** A row's picture: the avatar, or the type's icon when there is none or it fails to load. */
function ItemIcon({ n }: { n: Notification }) {
  const [broken, setBroken] = useState<string | null>(null);
  const src = n.avatar_url && safeAvatar(n.avatar_url);
  if (src && broken !== src) return <img src={src} alt="" onError={() => setBroken(src)} data-testid="herald-avatar" />;
  return <>{iconFor(n.type)}</>;
}

/** Avatars load from http(s) or a same-origin path only (the link rule), nothing else. */
function safeAvatar(url: string): string | null {
  return safeLink(url);
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

type ConnShape = 'live' | 'pending' | 'down' | 'offline';
function connShape(state: ConnectionState): ConnShape {
  return state === 'open' ? 'live' : state === 'error' || state === 'closed' ? 'down' : state === 'offline' ? 'offline' : 'pending';
}

/**
 * The connection state as a shape, not only a colour: a filled dot (live), a ring (connecting),
 * a cross (down), a struck-through ring (offline). Decorative: the words are always there too.
 */
export function ConnectionIcon({ state, size = 10 }: { state: ConnectionState; size?: number }) {
  const shape = connShape(state);
  return (
    <svg width={size} height={size} viewBox="0 0 10 10" aria-hidden="true" focusable="false" data-shape={shape}>
      {shape === 'live' && <circle cx="5" cy="5" r="4" fill="currentColor" />}
      {shape === 'pending' && <circle cx="5" cy="5" r="3.2" fill="none" stroke="currentColor" strokeWidth="1.6" />}
      {shape === 'down' && <path d="M2 2 8 8M8 2 2 8" stroke="currentColor" strokeWidth="2.2" strokeLinecap="round" />}
      {shape === 'offline' && (
        <>
          <circle cx="5" cy="5" r="3.2" fill="none" stroke="currentColor" strokeWidth="1.4" />
          <path d="M1.2 8.8 8.8 1.2" stroke="currentColor" strokeWidth="1.4" strokeLinecap="round" />
        </>
      )}
    </svg>
  );
}

/** The bell, badge and dropdown, driven entirely by props (see `NotificationBell` for the live one). */
export function NotificationBellView(props: NotificationBellViewProps) {
  const { notifications, unreadCount, state, loading, hasMore, onMarkRead, onMarkAllRead, onLoadMore } = props;
  const L = resolveLabels(props.labels);
  const locale = props.locale;
  const controlled = props.open !== undefined;
  const [openState, setOpenState] = useState(!!props.defaultOpen);
  const open = controlled ? !!props.open : openState;
  const onOpenChangeRef = useRef(props.onOpenChange);
  onOpenChangeRef.current = props.onOpenChange;
  // Uncontrolled: state here (reported through the effect below). Controlled: only asks.
  const setOpen = useCallback(
    (next: boolean | ((o: boolean) => boolean)) => {
      if (controlled) {
        const v = typeof next === 'function' ? next(!!props.open) : next;
        if (v !== !!props.open) onOpenChangeRef.current?.(v);
      } else setOpenState(next);
    },
    [controlled, props.open],
  );
  const rootRef = useRef<HTMLDivElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const listRef = useRef<HTMLUListElement>(null);
  const panelId = useId();
  const titleId = useId();
  const stateId = useId();
  const now = useNow();
  const focusFirstOnOpen = useRef(false);
  const onOpenChange = props.onOpenChange;
  // The settings view (renderSettings) instead of the list; a closed panel reopens on the list.
  const [settings, setSettings] = useState(false);
  const settingsButtonRef = useRef<HTMLButtonElement>(null);
  const settingsFocus = useRef<'title' | 'gear' | null>(null);
  useEffect(() => {
    if (!open) setSettings(false);
  }, [open]);
  useEffect(() => {
    const f = settingsFocus.current;
    if (!f) return;
    settingsFocus.current = null;
    if (f === 'title') document.getElementById(titleId)?.focus();
    else settingsButtonRef.current?.focus();
  });
  const showSettings = settings && !!props.renderSettings;

  useEffect(() => {
    if (!controlled) onOpenChange?.(open);
  }, [open, onOpenChange, controlled]);
  const controlledRef = useRef(controlled);
  controlledRef.current = controlled;
  useEffect(
    () => () => {
      if (!controlledRef.current) onOpenChange?.(false);
    },
    [onOpenChange],
  );

  const close = useCallback(
    (restoreFocus: boolean) => {
      setOpen(false);
      if (restoreFocus) buttonRef.current?.focus();
    },
    [setOpen],
  );

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
  }, [open, setOpen]);

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
    const rows = Array.from(listRef.current?.querySelectorAll<HTMLElement>('[data-testid="herald-item"]') ?? []);
    const target = rows[idx - start];
    const more = listRef.current?.querySelector<HTMLElement>('[data-testid="herald-load-more"]');
    // Nothing new yet and focus still on "Load older": the client may still be paging (it skips
    // pages it already holds), or it failed (the button stays, and so does focus). Wait.
    if (!target && more && document.activeElement === more) return;
    focusAfterLoad.current = null;
    if (target) target.focus();
    // Nothing older came (the end of the list: the button went away): the last row, not <body>.
    else if (!rootRef.current?.contains(document.activeElement)) (rows[rows.length - 1] ?? listRef.current)?.focus();
  }, [notifications, loading, limit, start]);

  // Focus inside the panel whose element went away or became disabled (Retry replaced by the
  // loading state, "Mark all as read" disabled once done, …): keep it in the panel — the first
  // row, else the Retry button, else the panel's title — instead of losing it to <body>.
  const focusInside = useRef(false);
  const panelRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open || !focusInside.current || typeof document === 'undefined') return;
    const a = document.activeElement as (HTMLElement & { disabled?: boolean }) | null;
    const lost = !a || a === document.body || !a.isConnected || !!a.disabled;
    if (!lost) return;
    const panel = panelRef.current;
    if (!panel) return;
    const target =
      panel.querySelector<HTMLElement>('[data-testid="herald-item"]') ??
      panel.querySelector<HTMLElement>('[data-testid="herald-retry"]') ??
      panel.querySelector<HTMLElement>('[data-testid="herald-panel-title"]');
    target?.focus();
  });
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
    if (next && rootRef.current && !rootRef.current.contains(next)) {
      focusInside.current = false;
      if (open) setOpen(false);
    }
  };
  // Tab / Shift+Tab out of the page itself (no element gets focus: e.g. Shift+Tab from a bell
  // that is the page's first control): close too, once the browser has moved focus.
  const onRootKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    if (e.key !== 'Tab' || !open) return;
    setTimeout(() => {
      const a = document.activeElement;
      if (!rootRef.current?.contains(a) || !document.hasFocus()) {
        focusInside.current = false;
        setOpen(false);
      }
    }, 0);
  };

  // The list's controls in order (rows, "Show newer", "Load older"): arrow keys move between them.
  const items = () => Array.from(listRef.current?.querySelectorAll<HTMLElement>('[data-hn-nav]') ?? []);

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

  // A row with a link: marks it read; a plain click goes through `onNavigate` (your router) when
  // given, else the browser follows the href. Modified clicks (new tab/window) are the browser's.
  const followRow = (e: ReactMouseEvent<HTMLAnchorElement>, n: Notification, link: string) => {
    if (!n.read_at) onMarkRead(n.id);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    close(true);
    if (props.onNavigate) {
      e.preventDefault();
      props.onNavigate(link);
    }
  };

  const error = props.error ?? null;
  const retryButton = props.onRetry ? (
    <button type="button" className="hn-button" onClick={() => props.onRetry?.()} data-testid="herald-retry">
      {L.retry}
    </button>
  ) : null;

  const label = L.bell(unreadCount);
  const stateLabel = L.states[state];
  const dotClass = `is-${connShape(state)}`;

  return (
    <div
      className="hn-bell"
      ref={rootRef}
      data-state={state}
      data-hn-theme={props.theme ?? 'auto'}
      onBlur={onRootBlur}
      onFocus={() => (focusInside.current = true)}
      onMouseDown={() => (focusInside.current = false)}
      onKeyDown={onRootKeyDown}
    >
      <button
        ref={buttonRef}
        type="button"
        className={`hn-bell__button${open ? ' is-open' : ''}`}
        aria-haspopup="dialog"
        aria-describedby={stateId}
        aria-expanded={open}
        aria-controls={open ? panelId : undefined}
        title={`${label} · ${stateLabel}`}
        onClick={() => setOpen((o) => !o)}
        onKeyDown={onButtonKey}
        data-testid="herald-bell"
      >
        {/* The name comes from this text (no aria-label hiding what is on screen). */}
        <span className="hn-sr">{label}</span>
        {props.renderBell ? (
          <span className="hn-bell__custom" aria-hidden="true">
            {props.renderBell({ unreadCount, state, open })}
          </span>
        ) : (
          <>
            <BellIcon />
            {unreadCount > 0 && (
              <span className="hn-badge" data-testid="herald-badge" aria-hidden="true">
                {badgeText(unreadCount)}
              </span>
            )}
            <span className={`hn-conn ${dotClass}`} data-testid="herald-conn" aria-hidden="true">
              <ConnectionIcon state={state} />
            </span>
          </>
        )}
      </button>
      {/* The connection state in words: the bell's description (outside it, so not in its name). */}
      <span className="hn-sr" id={stateId}>
        {stateLabel}
      </span>

      {open && (
        <div
          className={`hn-panel hn-panel--${props.placement ?? 'bottom-end'}`}
          id={panelId}
          ref={panelRef}
          role="dialog" aria-modal="false" aria-labelledby={titleId} data-testid="herald-panel">
          <div className="hn-panel__header">
            {showSettings && (
              <button
                type="button"
                className="hn-icon-button"
                data-testid="herald-settings-back"
                onClick={() => {
                  settingsFocus.current = 'gear';
                  setSettings(false);
                }}
              >
                <span aria-hidden="true" className="hn-back-arrow">
                  ←
                </span>
                <span className="hn-sr">{L.prefs.back}</span>
              </button>
            )}
            {/* Focusable from script only: where focus goes when what had it went away. */}
            <h2 className="hn-panel__title" id={titleId} tabIndex={-1} data-testid="herald-panel-title">
              {showSettings ? L.prefs.title : L.title}
            </h2>
            {showSettings ? (
              <span className="hn-panel__spacer" />
            ) : (
              <>
            <span className={`hn-panel__status ${dotClass}`} data-testid="herald-status">
              <span className={`hn-conn-inline ${dotClass}`} aria-hidden="true">
                <ConnectionIcon state={state} size={8} />
              </span>
              {stateLabel}
            </span>
            <button type="button" className="hn-link-button" onClick={() => onMarkAllRead()} disabled={unreadCount === 0}>
              {L.markAllRead}
            </button>
            {props.renderSettings && (
              <button
                type="button"
                ref={settingsButtonRef}
                className="hn-icon-button"
                data-testid="herald-settings"
                title={L.prefs.title}
                onClick={() => {
                  settingsFocus.current = 'title';
                  setSettings(true);
                }}
              >
                <GearIcon />
                <span className="hn-sr">{L.prefs.title}</span>
              </button>
            )}
              </>
            )}
          </div>

          {showSettings && (
            <div className="hn-panel__settings" data-testid="herald-settings-view">
              {props.renderSettings?.({ titleId })}
            </div>
          )}

          {!showSettings && props.onFilterChange && (
            <div className="hn-filters" data-testid="herald-filters">
              <div className="hn-filters__group" role="group" aria-label={L.filters}>
                {(
                  [
                    ['inbox', L.filterInbox, { archived: false, unread: false }],
                    ['unread', L.filterUnread, { archived: false, unread: true }],
                    ['archived', L.filterArchived, { archived: true, unread: false }],
                  ] as const
                ).map(([key, text, f]) => {
                  const cur = props.filter ?? {};
                  const pressed = (cur.archived ?? null) === f.archived && !!cur.unread === f.unread;
                  return (
                    <button
                      key={key}
                      type="button"
                      className={`hn-chip${pressed ? ' is-pressed' : ''}`}
                      aria-pressed={pressed}
                      data-testid={`herald-filter-${key}`}
                      onClick={() => props.onFilterChange?.({ ...cur, archived: f.archived, unread: f.unread })}
                    >
                      {text}
                    </button>
                  );
                })}
              </div>
              {props.types && props.types.length > 0 && (
                <label className="hn-filters__type">
                  <span className="hn-filters__type-label">{L.typeFilter}</span>
                  <select
                    value={props.filter?.type ?? ''}
                    data-testid="herald-filter-type"
                    onChange={(e) => props.onFilterChange?.({ ...(props.filter ?? {}), type: e.target.value || null })}
                  >
                    <option value="">{L.allTypes}</option>
                    {props.types.map((t) => (
                      <option key={t} value={t}>
                        {t}
                      </option>
                    ))}
                  </select>
                </label>
              )}
            </div>
          )}

          {!showSettings && props.actionError && (
            <div className="hn-alert" role="alert" data-testid="herald-action-error">
              <span className="hn-alert__text">
                {L.actionFailed[props.actionError.action]} <span className="hn-alert__reason">({props.actionError.message})</span>
              </span>
              {props.onDismissActionError && (
                <button type="button" className="hn-link-button" onClick={() => props.onDismissActionError?.()}>
                  {L.dismiss}
                </button>
              )}
            </div>
          )}

          {!showSettings && error && notifications.length > 0 && (
            <div className="hn-alert is-error" role="alert" data-testid="herald-error">
              <span className="hn-alert__text">
                {L.describeError(error)} <span className="hn-alert__reason">({error.message})</span>
              </span>
              {retryButton}
            </div>
          )}

          {showSettings ? null : notifications.length === 0 ? (
            error ? (
              <div className="hn-empty hn-status is-error" role="alert" data-testid="herald-error">
                <p className="hn-empty__title">{L.describeError(error)}</p>
                <p className="hn-empty__hint hn-status__reason">{error.message}</p>
                {retryButton}
              </div>
            ) : state === 'open' && !loading ? (
              <div className="hn-empty" data-testid="herald-empty">
                {props.renderEmpty ? (
                  props.renderEmpty()
                ) : (
                  <>
                    <div className="hn-empty__icon" aria-hidden="true">
                      <BellIcon size={28} />
                    </div>
                    <p className="hn-empty__title">{L.emptyTitle}</p>
                    <p className="hn-empty__hint">{L.emptyHint}</p>
                  </>
                )}
              </div>
            ) : (
              <div className="hn-empty hn-status" role="status" data-testid="herald-pending">
                <p className="hn-empty__title">{state === 'open' ? L.loading : stateLabel}</p>
                <p className="hn-empty__hint">{L.pendingHints[state]}</p>
                {(state === 'offline' || state === 'reconnecting' || state === 'closed') && retryButton}
              </div>
            )
          ) : (
            <ul className="hn-list" aria-label={L.title} ref={listRef} onKeyDown={onListKey}>
              {start > 0 && (
                <li className="hn-more">
                  <button type="button" data-hn-nav className="hn-link-button" onClick={showNewer} data-testid="herald-show-newer">
                    {L.showNewer}
                  </button>
                </li>
              )}
              {shown.map((n, i) => {
                const unread = !n.read_at;
                const time = formatRelative(n.created_at, now, locale);
                const link = safeLink(n.link);
                const rowProps = {
                  'data-hn-nav': '',
                  tabIndex: i === 0 ? 0 : -1,
                  className: `hn-item${unread ? ' is-unread' : ''}`,
                  'data-testid': 'herald-item',
                  'data-id': n.id,
                  'data-unread': unread ? 'true' : 'false',
                };
                const content = (
                  <>
                    {unread && <span className="hn-sr">{L.unread}</span>}
                        {props.renderItem ? (
                          props.renderItem(n, { unread, time })
                        ) : (
                          <>
                            <span className="hn-item__icon" aria-hidden="true">
                              <ItemIcon n={n} />
                            </span>
                            <span className="hn-item__content">
                              <span className="hn-item__title">{n.title}</span>
                              {n.body && <span className="hn-item__body">{n.body}</span>}
                              <time className="hn-item__time" dateTime={n.created_at} title={new Date(n.created_at).toLocaleString(locale)}>
                                {time}
                              </time>
                            </span>
                            {unread && <span className="hn-item__dot" aria-hidden="true" />}
                      </>
                    )}
                  </>
                );
                const archived = !!n.archived_at;
                const itemActions =
                  props.onArchive || props.onUnarchive || props.onMarkUnread || props.onDelete ? (
                    <span className="hn-item__actions" data-testid="herald-item-actions">
                      {!archived && !unread && props.onMarkUnread && (
                        <button type="button" className="hn-action" data-testid="herald-action-unread" onClick={() => props.onMarkUnread?.(n.id)}>
                          {L.markUnread}
                          <span className="hn-sr">: {n.title}</span>
                        </button>
                      )}
                      {!archived && props.onArchive && (
                        <button type="button" className="hn-action" data-testid="herald-action-archive" onClick={() => props.onArchive?.(n.id)}>
                          {L.archive}
                          <span className="hn-sr">: {n.title}</span>
                        </button>
                      )}
                      {archived && props.onUnarchive && (
                        <button type="button" className="hn-action" data-testid="herald-action-unarchive" onClick={() => props.onUnarchive?.(n.id)}>
                          {L.unarchive}
                          <span className="hn-sr">: {n.title}</span>
                        </button>
                      )}
                      {props.onDelete && (
                        <button type="button" className="hn-action is-danger" data-testid="herald-action-delete" onClick={() => props.onDelete?.(n.id)}>
                          {L.deleteItem}
                          <span className="hn-sr">: {n.title}</span>
                        </button>
                      )}
                    </span>
                  ) : null;
                return (
                  <li key={n.id} className="hn-row">
                    {/* One control per row, named by its visible text (title, body, time): a link
                        when the notification goes somewhere (new tab, copy link, router), else a button. */}
                    {link ? (
                      <a href={link} {...rowProps} onClick={(e) => followRow(e, n, link)}>
                        {content}
                      </a>
                    ) : (
                      <button type="button" {...rowProps} onClick={() => activate(n)}>
                        {content}
                      </button>
                    )}
                    {itemActions}
                  </li>
                );
              })}
              {(moreHeld || (hasMore && onLoadMore)) && (
                <li className="hn-more">
                  <button
                    type="button"
                    data-hn-nav
                    className="hn-link-button"
                    onClick={loadOlder}
                    aria-disabled={loading || undefined}
                    data-testid="herald-load-more"
                  >
                    {loading ? L.loading : L.loadOlder}
                  </button>
                </li>
              )}
            </ul>
          )}

          {!showSettings && props.viewAllHref && (
            <div className="hn-panel__footer">
              <a className="hn-view-all" href={props.viewAllHref}>
                {L.viewAll}
              </a>
            </div>
          )}
        </div>
      )}
    </div>
  );
}

export interface NotificationBellProps
  extends Partial<
    Pick<
      NotificationBellViewProps,
      | 'viewAllHref'
      | 'onNavigate'
      | 'defaultOpen'
      | 'pageSize'
      | 'open'
      | 'onOpenChange'
      | 'placement'
      | 'theme'
      | 'labels'
      | 'locale'
      | 'renderItem'
      | 'renderEmpty'
      | 'renderBell'
      | 'types'
    >
  > {
  client?: HeraldClient;
  /** Per-row archive, mark-unread and delete buttons, and the Inbox / Unread / Archived filter (default true). */
  inboxActions?: boolean;
  /** A settings button in the panel that opens `<NotificationPreferences />` in it (default false). */
  settings?: boolean;
}

/** The live bell: reads the client from props or `<HeraldProvider>`. */
export function NotificationBell({ client, onOpenChange: userOnOpenChange, inboxActions = true, settings = false, ...rest }: NotificationBellProps) {
  const h = useNotifications({ client, autoConnect: true, filter: inboxActions ? INBOX_FILTER : undefined });
  const c = h.client;
  const userRef = useRef(userOnOpenChange);
  userRef.current = userOnOpenChange;
  const controlled = useRef(rest.open !== undefined);
  controlled.current = rest.open !== undefined;
  const onOpenChange = useCallback(
    (open: boolean) => {
      if (!controlled.current) c.setInboxOpen(open);
      userRef.current?.(open);
    },
    [c],
  );
  // Controlled: the client learns the panel's state from the prop itself.
  useEffect(() => {
    if (rest.open !== undefined) c.setInboxOpen(rest.open);
  }, [c, rest.open]);
  useEffect(() => () => c.setInboxOpen(false), [c]);
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
      renderSettings={settings ? ({ titleId }) => <NotificationPreferences client={c} showTitle={false} titleId={titleId} labels={rest.labels?.prefs} /> : undefined}
      {...(inboxActions
        ? {
            filter: h.filter,
            onFilterChange: (f: ListFilter) => c.setFilter(f),
            onArchive: (id: string) => void c.archive(id).catch(() => undefined),
            onUnarchive: (id: string) => void c.unarchive(id).catch(() => undefined),
            onMarkUnread: (id: string) => void c.markUnread(id).catch(() => undefined),
            onDelete: (id: string) => void c.delete(id).catch(() => undefined),
          }
        : {})}
    />
  );
}

/** The live bell starts on the inbox: not archived. */
const INBOX_FILTER: ListFilter = { archived: false };

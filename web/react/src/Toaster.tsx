import { useCallback, useEffect, useRef, useState } from 'react';
import type { HeraldClient, Notification } from 'herald-notify-client';
import { iconFor, safeLink } from './format';
import { useHeraldClient } from './useNotifications';

export interface ToastItem {
  id: string;
  type: string;
  title: string;
  body: string;
  link: string | null;
  /** Set for stored notifications (not for broadcasts): clicking marks it read, and it goes away once read anywhere. */
  seq?: number;
}

export interface ToasterProps {
  client?: HeraldClient;
  /** Auto-dismiss after this many ms (default 5000). Hovering or keyboard focus pauses it. */
  durationMs?: number;
  /** At most this many toasts on screen (default 3); the rest of a burst is summed up as "+N more". */
  max?: number;
  onNavigate?: (link: string) => void;
  /** Also toast ephemeral broadcasts (`global_notification`; default true). */
  broadcasts?: boolean;
}

/**
 * Toasts for new notifications. Uses the client's `toast` event, which fires in one tab per user
 * (cross-tab claim over BroadcastChannel, preferring the visible, focused tab) and never while
 * the inbox panel is open. Opening the panel clears the notification toasts (the list shows
 * them); broadcasts wait until it closes. A toast goes away when its notification is read
 * anywhere; clicking it marks it read.
 */
export function Toaster({ client: explicit, durationMs = 5000, max = 3, onNavigate, broadcasts = true }: ToasterProps) {
  const client = useHeraldClient(explicit);
  const [toasts, setToasts] = useState<ToastItem[]>([]);
  const [inboxOpen, setInboxOpen] = useState(client.inboxOpen);

  const push = useCallback((t: ToastItem) => setToasts((cur) => (cur.some((x) => x.id === t.id) ? cur : [t, ...cur].slice(0, 100))), []);
  const dismiss = useCallback((id: string) => setToasts((cur) => cur.filter((t) => t.id !== id)), []);
  const dismissOverflow = useCallback(() => setToasts((cur) => cur.slice(0, max)), [max]);

  useEffect(() => {
    setInboxOpen(client.inboxOpen);
    const offs = [
      client.on('toast', (n: Notification) => push({ id: n.id, type: n.type, title: n.title, body: n.body, link: n.link, seq: n.seq })),
      client.on('read', ({ ids, up_to_seq }) => {
        const read = new Set(ids);
        setToasts((cur) => cur.filter((t) => t.seq === undefined || !(read.has(t.id) || (up_to_seq !== null && t.seq <= up_to_seq))));
      }),
      client.on('inbox', (open) => {
        setInboxOpen(open);
        if (open) setToasts((cur) => cur.filter((t) => t.seq === undefined));
      }),
    ];
    if (broadcasts) offs.push(client.on('global', (b) => push({ id: b.id, type: b.type, title: b.title, body: b.body, link: b.link })));
    return () => offs.forEach((off) => off());
  }, [client, push, broadcasts]);

  const navigate = onNavigate ?? ((l: string) => window.location.assign(l));
  const open = useCallback(
    (t: ToastItem) => {
      dismiss(t.id);
      if (t.seq !== undefined) void client.markRead(t.id).catch(() => undefined);
      const link = safeLink(t.link);
      if (link) navigate(link);
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [client, dismiss, onNavigate],
  );

  const shown = inboxOpen ? [] : toasts.slice(0, max);
  const more = inboxOpen ? 0 : toasts.length - shown.length;

  return (
    <div className="hn-toaster" role="region" aria-label="Notifications" aria-live="polite">
      {shown.map((t) => (
        <Toast key={t.id} toast={t} durationMs={durationMs} onDismiss={dismiss} onOpen={open} />
      ))}
      {more > 0 && <ToastMore count={more} durationMs={durationMs} onDismiss={dismissOverflow} />}
    </div>
  );
}

/** "+N more": the rest of a burst, cleared with the burst. */
function ToastMore({ count, durationMs, onDismiss }: { count: number; durationMs: number; onDismiss: () => void }) {
  useEffect(() => {
    const t = setTimeout(onDismiss, durationMs);
    return () => clearTimeout(t);
  }, [onDismiss, durationMs]);
  return (
    <div className="hn-toast-more" data-testid="herald-toast-more">
      +{count} more
    </div>
  );
}

export function Toast({
  toast,
  durationMs,
  onDismiss,
  onOpen,
  onNavigate,
}: {
  toast: ToastItem;
  durationMs: number;
  onDismiss: (id: string) => void;
  /** Activating the toast (click, Enter); default: dismiss and follow its link with `onNavigate`. */
  onOpen?: (toast: ToastItem) => void;
  onNavigate?: (link: string) => void;
}) {
  const [hovered, setHovered] = useState(false);
  const [focused, setFocused] = useState(false);
  const paused = hovered || focused;
  const remaining = useRef(durationMs);
  const startedAt = useRef(0);

  useEffect(() => {
    if (paused) return;
    startedAt.current = Date.now();
    const t = setTimeout(() => onDismiss(toast.id), remaining.current);
    return () => {
      clearTimeout(t);
      remaining.current = Math.max(500, remaining.current - (Date.now() - startedAt.current));
    };
  }, [paused, toast.id, onDismiss]);

  const link = safeLink(toast.link);
  const open = () => {
    if (onOpen) return onOpen(toast);
    onDismiss(toast.id);
    if (link) onNavigate?.(link);
  };

  return (
    <div
      className={`hn-toast${link || toast.seq !== undefined ? ' is-clickable' : ''}`}
      role="status"
      data-testid="herald-toast"
      data-id={toast.id}
      tabIndex={0}
      onMouseEnter={() => setHovered(true)}
      onMouseLeave={() => setHovered(false)}
      onFocus={() => setFocused(true)}
      onBlur={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setFocused(false);
      }}
      onClick={open}
      onKeyDown={(e) => {
        if (e.target !== e.currentTarget) return;
        if (e.key === 'Enter') open();
        if (e.key === 'Escape') onDismiss(toast.id);
      }}
      style={{ ['--hn-toast-duration' as string]: `${durationMs}ms` }}
    >
      <span className="hn-toast__icon" aria-hidden="true">
        {iconFor(toast.type)}
      </span>
      <span className="hn-toast__content">
        <span className="hn-toast__title">{toast.title}</span>
        {toast.body && <span className="hn-toast__body">{toast.body}</span>}
      </span>
      <button
        type="button"
        className="hn-toast__close"
        aria-label="Dismiss notification"
        onClick={(e) => {
          e.stopPropagation();
          onDismiss(toast.id);
        }}
      >
        ×
      </button>
      <span className={`hn-toast__progress${paused ? ' is-paused' : ''}`} aria-hidden="true" />
    </div>
  );
}

import { useCallback, useEffect, useRef, useState, type MouseEvent as ReactMouseEvent } from 'react';
import type { HeraldClient, Notification } from 'herald-notify-client';
import { iconFor, safeLink } from './format';
import { resolveLabels, type HeraldLabels } from './labels';
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
  /** 'auto' (default) follows the system's light/dark preference; 'light' or 'dark' forces one. */
  theme?: 'auto' | 'light' | 'dark';
  /** Words (`toastRegion`, `dismissToast`, `moreToasts`); missing ones fall back to English. */
  labels?: Partial<HeraldLabels>;
}

/**
 * Toasts for new notifications. Uses the client's `toast` event, which fires in one tab per user
 * (cross-tab claim over BroadcastChannel, preferring the visible, focused tab) and never while
 * the inbox panel is open. Opening the panel clears the notification toasts (the list shows
 * them); broadcasts wait until it closes. A toast goes away when its notification is read
 * anywhere; clicking it marks it read.
 */
export function Toaster({ client: explicit, durationMs = 5000, max = 3, onNavigate, broadcasts = true, theme = 'auto', labels }: ToasterProps) {
  const L = resolveLabels(labels);
  const client = useHeraldClient(explicit);
  const [toasts, setToasts] = useState<ToastItem[]>([]);
  const [inboxOpen, setInboxOpen] = useState(client.inboxOpen);

  const push = useCallback((t: ToastItem) => setToasts((cur) => (cur.some((x) => x.id === t.id) ? cur : [t, ...cur].slice(0, 100))), []);
  const regionRef = useRef<HTMLElement>(null);
  /** Where focus was before it entered the toasts (to give it back when the last one goes). */
  const focusBefore = useRef<HTMLElement | null>(null);
  /** A focused toast went away: its position, to move focus to the next one (or back). */
  const refocusAt = useRef<number | null>(null);
  const dismiss = useCallback((id: string) => {
    const region = regionRef.current;
    if (region && typeof document !== 'undefined' && region.contains(document.activeElement)) {
      const els = Array.from(region.querySelectorAll<HTMLElement>('[data-testid="herald-toast"]'));
      refocusAt.current = Math.max(0, els.findIndex((el) => el.getAttribute('data-id') === id));
    }
    setToasts((cur) => cur.filter((t) => t.id !== id));
  }, []);
  useEffect(() => {
    const at = refocusAt.current;
    if (at === null) return;
    refocusAt.current = null;
    const region = regionRef.current;
    if (region?.contains(document.activeElement)) return;
    const els = Array.from(region?.querySelectorAll<HTMLElement>('[data-testid="herald-toast"]') ?? []);
    const next = els[Math.min(at, els.length - 1)];
    const target =
      next?.querySelector<HTMLElement>('[data-testid="herald-toast-open"], .hn-toast__close') ??
      (focusBefore.current?.isConnected ? focusBefore.current : null) ??
      document.querySelector<HTMLElement>('[data-testid="herald-bell"]');
    target?.focus();
  }, [toasts]);
  const dismissOverflow = useCallback(() => setToasts((cur) => cur.slice(0, max)), [max]);

  useEffect(() => {
    setInboxOpen(client.inboxOpen);
    const offs = [
      client.on('toast', (n: Notification) => {
        push({ id: n.id, type: n.type, title: n.title, body: n.body, link: n.link, seq: n.seq });
        // A toast shown in a visible tab counts as seen (whatever the client's `seen` mode).
        if (typeof document !== 'undefined' && document.visibilityState === 'visible') void client.markSeen(n.seq).catch(() => undefined);
      }),
      // Deleted or archived elsewhere: the toast goes too.
      client.on('lifecycle', ({ action, ids }) => {
        if (action !== 'delete' && action !== 'archive' && action !== 'read') return;
        const gone = new Set(ids);
        setToasts((cur) => cur.filter((t) => t.seq === undefined || !gone.has(t.id)));
      }),
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
    (t: ToastItem, opts?: { navigate?: boolean }) => {
      dismiss(t.id);
      if (t.seq !== undefined) void client.markRead(t.id).catch(() => undefined);
      const link = safeLink(t.link);
      if (link && opts?.navigate !== false) navigate(link);
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [client, dismiss, onNavigate],
  );

  const shown = inboxOpen ? [] : toasts.slice(0, max);
  const more = inboxOpen ? 0 : toasts.length - shown.length;

  return (
    // The one live region for toasts: the toasts inside are plain content (no nested status roles).
    <section
      className="hn-toaster"
      aria-label={L.toastRegion}
      aria-live="polite"
      aria-relevant="additions"
      data-testid="herald-toaster"
      data-hn-theme={theme}
      ref={regionRef}
      onFocus={(e) => {
        const from = e.relatedTarget as HTMLElement | null;
        if (from && !e.currentTarget.contains(from)) focusBefore.current = from;
      }}
    >
      {shown.map((t) => (
        <Toast key={t.id} toast={t} durationMs={durationMs} onDismiss={dismiss} onOpen={open} dismissLabel={L.dismissToast} />
      ))}
      {more > 0 && <ToastMore text={L.moreToasts(more)} durationMs={durationMs} onDismiss={dismissOverflow} />}
    </section>
  );
}

/** "+N more": the rest of a burst, cleared with the burst. */
function ToastMore({ text, durationMs, onDismiss }: { text: string; durationMs: number; onDismiss: () => void }) {
  useEffect(() => {
    const t = setTimeout(onDismiss, durationMs);
    return () => clearTimeout(t);
  }, [onDismiss, durationMs]);
  return (
    <div className="hn-toast-more" data-testid="herald-toast-more">
      {text}
    </div>
  );
}

export function Toast({
  toast,
  durationMs,
  onDismiss,
  onOpen,
  onNavigate,
  dismissLabel = 'Dismiss notification',
}: {
  toast: ToastItem;
  dismissLabel?: string;
  durationMs: number;
  onDismiss: (id: string) => void;
  /**
   * Activating the toast (click, Enter); default: dismiss and follow its link with `onNavigate`.
   * `navigate: false` when the browser opens the link itself (a modified click: new tab).
   */
  onOpen?: (toast: ToastItem, opts?: { navigate?: boolean }) => void;
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
  const open = (opts?: { navigate?: boolean }) => {
    if (onOpen) return onOpen(toast, opts);
    onDismiss(toast.id);
    if (link && opts?.navigate !== false) onNavigate?.(link);
  };
  // A toast with a link is a real link (new tab, copy link); a plain click is routed through
  // `onNavigate`, a modified click is left to the browser (the toast still counts as opened).
  const followLink = (e: ReactMouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return open({ navigate: false });
    e.preventDefault();
    open();
  };

  const actionable = !!link || toast.seq !== undefined;
  const inner = (
    <>
      <span className="hn-toast__icon" aria-hidden="true">
        {iconFor(toast.type)}
      </span>
      <span className="hn-toast__content">
        <span className="hn-toast__title">{toast.title}</span>
        {toast.body && <span className="hn-toast__body">{toast.body}</span>}
      </span>
    </>
  );

  // The toast itself is not focusable: its actions are real buttons (open it, dismiss it).
  // Focus or hover anywhere in it pauses the timer; Escape inside it dismisses it.
  return (
    <div
      className={`hn-toast${actionable ? ' is-clickable' : ''}${focused ? ' is-focused' : ''}`}
      data-testid="herald-toast"
      data-id={toast.id}
      onMouseEnter={() => setHovered(true)}
      onMouseLeave={() => setHovered(false)}
      onFocus={() => setFocused(true)}
      onBlur={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setFocused(false);
      }}
      onKeyDown={(e) => {
        if (e.key === 'Escape') {
          e.stopPropagation();
          onDismiss(toast.id);
        }
      }}
      style={{ ['--hn-toast-duration' as string]: `${durationMs}ms` }}
    >
      {link ? (
        <a href={link} className="hn-toast__main" data-testid="herald-toast-open" onClick={followLink}>
          {inner}
        </a>
      ) : actionable ? (
        <button type="button" className="hn-toast__main" data-testid="herald-toast-open" onClick={() => open()}>
          {inner}
        </button>
      ) : (
        <div className="hn-toast__main">{inner}</div>
      )}
      <button
        type="button"
        className="hn-toast__close"
        aria-label={dismissLabel}
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

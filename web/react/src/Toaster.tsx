import { useCallback, useEffect, useRef, useState } from 'react';
import type { HeraldClient, Notification } from '@herald/client';
import { iconFor, safeLink } from './format';
import { useHeraldClient } from './useNotifications';

export interface ToastItem {
  id: string;
  type: string;
  title: string;
  body: string;
  link: string | null;
}

export interface ToasterProps {
  client?: HeraldClient;
  /** Auto-dismiss after this many ms (default 5000). Hovering pauses it. */
  durationMs?: number;
  /** At most this many toasts on screen (default 4). */
  max?: number;
  onNavigate?: (link: string) => void;
  /** Also toast ephemeral broadcasts (`global_notification`; default true). */
  broadcasts?: boolean;
}

/**
 * Toasts for new notifications. Uses the client's `toast` event, which fires in exactly one tab
 * per user (cross-tab claim over BroadcastChannel).
 */
export function Toaster({ client: explicit, durationMs = 5000, max = 4, onNavigate, broadcasts = true }: ToasterProps) {
  const client = useHeraldClient(explicit);
  const [toasts, setToasts] = useState<ToastItem[]>([]);

  const push = useCallback(
    (t: ToastItem) => setToasts((cur) => (cur.some((x) => x.id === t.id) ? cur : [t, ...cur].slice(0, max))),
    [max],
  );
  const dismiss = useCallback((id: string) => setToasts((cur) => cur.filter((t) => t.id !== id)), []);

  useEffect(() => {
    const offs = [
      client.on('toast', (n: Notification) => push({ id: n.id, type: n.type, title: n.title, body: n.body, link: n.link })),
    ];
    if (broadcasts) offs.push(client.on('global', (b) => push({ id: b.id, type: b.type, title: b.title, body: b.body, link: b.link })));
    return () => offs.forEach((off) => off());
  }, [client, push, broadcasts]);

  const navigate = onNavigate ?? ((l: string) => window.location.assign(l));

  return (
    <div className="hn-toaster" role="region" aria-label="Notifications" aria-live="polite">
      {toasts.map((t) => (
        <Toast key={t.id} toast={t} durationMs={durationMs} onDismiss={dismiss} onNavigate={navigate} />
      ))}
    </div>
  );
}

export function Toast({
  toast,
  durationMs,
  onDismiss,
  onNavigate,
}: {
  toast: ToastItem;
  durationMs: number;
  onDismiss: (id: string) => void;
  onNavigate: (link: string) => void;
}) {
  const [paused, setPaused] = useState(false);
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
    onDismiss(toast.id);
    if (link) onNavigate(link);
  };

  return (
    <div
      className={`hn-toast${link ? ' is-clickable' : ''}`}
      role="status"
      data-testid="herald-toast"
      data-id={toast.id}
      tabIndex={0}
      onMouseEnter={() => setPaused(true)}
      onMouseLeave={() => setPaused(false)}
      onClick={open}
      onKeyDown={(e) => {
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

import { StrictMode, useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { createRoot } from 'react-dom/client';
import { HeraldClient, type PublishRequest } from 'herald-notify-client';
import { HeraldProvider, NotificationBell, Toaster, connectionStateLabel, useNotifications } from 'herald-notify-react';
import 'herald-notify-react/styles.css';
import './demo.css';
import { PushToggle } from './push';

// ---------------------------------------------------------------- configuration
// Same origin by default; `?ws=ws://127.0.0.1:8082/v1/ws&api=http://127.0.0.1:8082` pins a node.
const params = new URLSearchParams(location.search);
const sameOriginWs = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/ws`;
const WS_URL = params.get('ws') || sameOriginWs;
const API_URL = (params.get('api') || location.origin).replace(/\/+$/, '');

// `?dir=rtl` lays the page out right to left; `?lang=fr` formats the bell's times in French.
const LANG = params.get('lang') || undefined;
// How long toasts stay (ms; default the Toaster's 5 s): the e2e test shortens it to check pausing.
const TOAST_MS = Number(params.get('toastMs')) || undefined;
if (params.get('dir') === 'rtl') document.documentElement.dir = 'rtl';
if (LANG) document.documentElement.lang = LANG;

const USER_RE = /^[A-Za-z0-9._~:@+=|-]{1,128}$/;

/** Why a user id is not accepted (null when it is), said out loud instead of silently fixed. */
function userIdProblem(user: string): string | null {
  if (!user) return 'Enter a user id.';
  if (/\s/.test(user)) return 'User ids can’t contain spaces.';
  if (user.length > 128) return 'Use at most 128 characters.';
  if (!USER_RE.test(user)) return 'Use only A–Z a–z 0–9 . _ ~ : @ + = | -';
  return null;
}

async function devToken(userId: string): Promise<string> {
  const res = await fetch(`${API_URL}/dev/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: userId, ttl_secs: 3600 }),
  });
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
  const body = (await res.json()) as { token: string; expires_at: number };
  return body.token;
}

// ---------------------------------------------------------------- sign-in

function SignIn({ onSignIn }: { onSignIn: (user: string) => void }) {
  const [user, setUser] = useState('alice');
  const problem = userIdProblem(user);
  const valid = problem === null;
  const input = useRef<HTMLInputElement>(null);
  // The suggestion is selected, so typing replaces it instead of appending to it.
  useEffect(() => {
    input.current?.focus();
    input.current?.select();
  }, []);
  return (
    <main className="signin">
      <form
        className="card signin__card"
        onSubmit={(e) => {
          e.preventDefault();
          if (valid) onSignIn(user);
        }}
      >
        <div className="brand brand--large">
          <Logo />
          <span>Herald</span>
        </div>
        <h1>Sign in to the demo</h1>
        <p className="muted">Pick any user id. The local gateway mints a development token for it.</p>
        <label className="field">
          <span>User id</span>
          <input
            ref={input}
            name="user"
            value={user}
            onChange={(e) => setUser(e.target.value)}
            onFocus={(e) => e.currentTarget.select()}
            autoComplete="off"
            aria-invalid={!valid}
            aria-describedby={valid ? undefined : 'user-problem'}
          />
        </label>
        {!valid && (
          <p className="error-text" id="user-problem" data-testid="user-problem">
            {problem}
          </p>
        )}
        <button className="btn btn--primary btn--block" type="submit" disabled={!valid}>
          Continue as {user || '…'}
        </button>
      </form>
    </main>
  );
}

function Logo() {
  return (
    <svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true">
      <rect width="24" height="24" rx="6" fill="#6e56cf" />
      <path d="M7 10a5 5 0 1 1 10 0c0 5 2 6.5 2 6.5H5S7 15 7 10Z" fill="#fff" />
      <circle cx="12" cy="19" r="1.6" fill="#fff" />
    </svg>
  );
}

// ---------------------------------------------------------------- app shell

const TYPES = [
  { value: 'comment.created', label: '💬 Comment' },
  { value: 'mention.created', label: '@ Mention' },
  { value: 'order.shipped', label: '📦 Order' },
  { value: 'task.assigned', label: '✅ Task' },
  { value: 'payment.processed', label: '💳 Payment' },
  { value: 'system.alert', label: '⚠️ System' },
  { value: 'generic', label: '🔔 Other' },
];

const TYPE_VALUES = TYPES.map((t) => t.value);

const SAMPLES: Record<string, { title: string; body: string; link: string }> = {
  'comment.created': { title: 'Bob commented on your post', body: 'Looks great! Ship it 🚀', link: '/#/posts/7' },
  'mention.created': { title: 'Carol mentioned you in #design', body: '@you can you review the new onboarding flow?', link: '/#/channels/design' },
  'order.shipped': { title: 'Order #1042 has shipped', body: 'Arriving Thursday via UPS.', link: '/#/orders/1042' },
  'task.assigned': { title: 'New task: Update billing docs', body: 'Assigned to you by Dana · due Friday', link: '/#/tasks/88' },
  'payment.processed': { title: 'Payment received', body: '$249.00 from Acme Corp for invoice INV-2031', link: '/#/billing/INV-2031' },
  'system.alert': { title: 'Scheduled maintenance tonight', body: 'The API will be read-only from 02:00 to 02:30 UTC.', link: '/#/status' },
  generic: { title: 'Hello from Herald', body: 'This is a test notification.', link: '' },
};

function App({ user, onSignOut }: { user: string; onSignOut: () => void }) {
  const client = useMemo(
    () => new HeraldClient({ url: WS_URL, apiUrl: API_URL, userId: user, getToken: () => devToken(user) }),
    [user],
  );
  useEffect(() => {
    client.connect();
    (window as unknown as { __herald?: HeraldClient }).__herald = client;
    return () => client.close();
  }, [client]);

  // The demo's notification links are in-page routes (`/#/orders/1042`): the gateway serves
  // this page at `/`, so such a link works in a new tab too, and the page shows which route it
  // was opened at. Links are still checked by the bell's `safeLink` (same-origin path: allowed).
  // Any other same-origin path is shown, not followed (the gateway has no page there).
  const [page, setPage] = useState<string | null>(() => hashRoute());
  useEffect(() => {
    const onHash = () => setPage(hashRoute());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const navigate = (link: string) => {
    if (link.startsWith('/#/')) location.hash = link.slice(1);
    else if (link.startsWith('/')) setPage(link);
    else window.open(link, '_blank', 'noopener');
  };
  const dismissPage = () => {
    if (hashRoute()) history.replaceState(null, '', `${location.pathname}${location.search}`);
    setPage(null);
  };

  return (
    <HeraldProvider client={client}>
      <header className="topbar">
        <div className="topbar__left">
          <div className="brand">
            <Logo />
            <span>Herald</span>
          </div>
        </div>
        <div className="topbar__right">
          {/* settings: the gear in the panel opens <NotificationPreferences /> (channels per type,
              quiet hours, digest); types: the panel's type filter. */}
          <NotificationBell onNavigate={navigate} locale={LANG} settings types={TYPE_VALUES} />
          <PushToggle client={client} />
          <div className="avatar" title={`Signed in as ${user}`} aria-hidden="true">
            {user.slice(0, 1).toUpperCase()}
          </div>
          <button className="btn btn--ghost btn--small topbar__signout" onClick={onSignOut} data-testid="sign-out">
            Sign out
          </button>
        </div>
      </header>
      <main className="content">
        <div className="content__head">
          <div>
            <h1>Good to see you, {user}</h1>
            <p className="muted">Notifications arrive in real time. Open this page in two tabs to see them sync.</p>
          </div>
          <ConnectionInfo user={user} />
        </div>
        {page && (
          <div className="card nav-banner" data-testid="nav-banner">
            {page.startsWith('#/') ? (
              <>
                Opened <code>{page}</code>, the demo’s stand-in for the notification’s page
              </>
            ) : (
              <>
                This demo has no page for <code>{page}</code> (the notification’s link)
              </>
            )}
            <button className="btn btn--ghost btn--small" onClick={dismissPage}>
              Dismiss
            </button>
          </div>
        )}
        <div className="grid">
          <SendForm user={user} />
          <Activity />
        </div>
      </main>
      <Toaster onNavigate={navigate} durationMs={TOAST_MS} />
    </HeraldProvider>
  );
}

function ConnectionInfo({ user }: { user: string }) {
  const { state, nodeId, unreadCount, client } = useNotifications();
  useEffect(() => {
    document.body.dataset.nodeId = nodeId ?? '';
    document.body.dataset.state = state;
    document.body.dataset.user = user;
  }, [nodeId, state, user]);
  return (
    <div className="conn-info" data-testid="conn-info" data-node-id={nodeId ?? ''} data-state={state} data-unread={unreadCount}>
      <span className={`pill pill--${state}`} data-testid="conn-label">
        <span className="pill__dot" />
        {connectionStateLabel(state)}
      </span>
      <span className="muted small">
        node <strong>{nodeId ?? '—'}</strong> · last seq <strong>{client.lastSeq}</strong>
      </span>
    </div>
  );
}

/** The in-page route in the URL (`#/orders/1042`), if any. */
function hashRoute(): string | null {
  return location.hash.startsWith('#/') ? location.hash : null;
}

function SendForm({ user }: { user: string }) {
  const [recipient, setRecipient] = useState(user);
  const recipientProblem = recipient ? userIdProblem(recipient) : null;
  const [type, setType] = useState('comment.created');
  const [title, setTitle] = useState(SAMPLES['comment.created']!.title);
  const [body, setBody] = useState(SAMPLES['comment.created']!.body);
  const [link, setLink] = useState(SAMPLES['comment.created']!.link);
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const pickType = (t: string) => {
    setType(t);
    const s = SAMPLES[t];
    if (s) {
      setTitle(s.title);
      setBody(s.body);
      setLink(s.link);
    }
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setStatus(null);
    const req: PublishRequest = {
      recipient,
      recipients: null,
      type,
      title,
      body,
      link: link || null,
      avatar_url: null,
      data: null,
      idempotency_key: null,
    };
    try {
      const res = await fetch(`${API_URL}/dev/publish`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(req),
      });
      const json = await res.json();
      if (!res.ok) setStatus({ ok: false, text: `${json.code ?? res.status}: ${json.message ?? 'failed'}` });
      else setStatus({ ok: true, text: `Sent to ${recipient} (seq ${json.notifications?.[0]?.seq ?? '?'})` });
    } catch (err) {
      setStatus({ ok: false, text: String(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card" onSubmit={submit} data-testid="send-form">
      <h2>Send a test notification</h2>
      <p className="muted small">Posts to <code>/dev/publish</code> on the gateway (development only).</p>
      <div className="row">
        <label className="field">
          <span>Recipient</span>
          <input name="recipient" value={recipient} onChange={(e) => setRecipient(e.target.value)} aria-invalid={!!recipientProblem} />
          {recipientProblem && <span className="error-text small">{recipientProblem}</span>}
        </label>
        <label className="field">
          <span>Type</span>
          <select name="type" value={type} onChange={(e) => pickType(e.target.value)}>
            {TYPES.map((t) => (
              <option key={t.value} value={t.value}>
                {t.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <label className="field">
        <span>Title</span>
        <input name="title" value={title} onChange={(e) => setTitle(e.target.value)} required maxLength={200} />
      </label>
      <label className="field">
        <span>Body</span>
        <textarea name="body" value={body} onChange={(e) => setBody(e.target.value)} rows={3} maxLength={4000} />
      </label>
      <label className="field">
        <span>Link</span>
        <input name="link" value={link} onChange={(e) => setLink(e.target.value)} placeholder="/path or https://…" />
      </label>
      <div className="form-actions">
        <button className="btn btn--primary" type="submit" disabled={busy || !title || !recipient || !!recipientProblem}>
          {busy ? 'Sending…' : 'Send notification'}
        </button>
        {status && (
          <span className={status.ok ? 'ok-text' : 'error-text'} data-testid="send-status" role="status">
            {status.text}
          </span>
        )}
      </div>
    </form>
  );
}

function Activity() {
  const { notifications, unreadCount, markAllAsRead, actionError } = useNotifications();
  const recent = notifications.slice(0, 5);
  return (
    <section className="card">
      <div className="card__head">
        <h2>Inbox</h2>
        <span className="muted small">{unreadCount} unread</span>
      </div>
      {recent.length === 0 ? (
        <p className="muted small">Nothing yet — send yourself a notification.</p>
      ) : (
        <ul className="mini-list">
          {recent.map((n) => (
            <li key={n.id} className={n.read_at ? '' : 'is-unread'}>
              <span className="mini-list__seq">#{n.seq}</span>
              <span className="mini-list__title">{n.title}</span>
            </li>
          ))}
        </ul>
      )}
      <button className="btn btn--ghost btn--small" onClick={() => void markAllAsRead()} disabled={unreadCount === 0}>
        Mark all as read
      </button>
      {actionError && (
        <p className="error-text small" role="status" data-testid="activity-error">
          Last action failed and was undone: {actionError.message}
        </p>
      )}
    </section>
  );
}

function Root() {
  const initial = params.get('user') || sessionStorage.getItem('herald-demo-user');
  const [user, setUser] = useState<string | null>(initial && USER_RE.test(initial) ? initial : null);
  if (!user)
    return (
      <SignIn
        onSignIn={(u) => {
          sessionStorage.setItem('herald-demo-user', u);
          setUser(u);
        }}
      />
    );
  return (
    <App
      key={user}
      user={user}
      onSignOut={() => {
        sessionStorage.removeItem('herald-demo-user');
        // `?user=` signs in on load: drop it, or a reload would sign straight back in.
        if (params.has('user')) {
          params.delete('user');
          const q = params.toString();
          history.replaceState(null, '', `${location.pathname}${q ? `?${q}` : ''}${location.hash}`);
        }
        setUser(null);
      }}
    />
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <Root />
  </StrictMode>,
);

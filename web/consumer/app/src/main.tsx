// A third-party app that knows Herald only through the two npm tarballs (copied outside the
// repository by web/consumer/run.sh). Served by a gateway node, so the WebSocket and the API are
// same-origin; the token comes from the node's development endpoint.
//
// `?variant=` picks how the bell is configured, so browser.test.mjs can drive the public API the
// way another team would use it:
//   (none)    defaults: <NotificationBell /> + <Toaster />;
//   `de`      German `labels` + `locale="de"`, `placement="bottom-start"`, and router integration
//             (`onNavigate` pushes history; nothing reloads);
//   `custom`  `renderBell`, `renderItem`, `renderEmpty`, and a controlled `open` driven by the
//             app's own button, with `onOpenChange` (a "veto" checkbox ignores the bell's requests);
//   `prefs`   a settings page: <NotificationPreferences /> with German labels, and the bell's
//             settings view (`settings`).
// What the app saw is recorded on `window.__consumer` for the test to read.
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { HeraldClient } from 'herald-notify-client';
import { HeraldProvider, NotificationBell, NotificationPreferences, Toaster } from 'herald-notify-react';
import 'herald-notify-react/styles.css';

const params = new URLSearchParams(location.search);
const user = params.get('user') || 'consumer';
const variant = params.get('variant') || 'default';

interface Seen {
  navigated: string[];
  openChanges: boolean[];
  saved: number;
}
const seen: Seen = { navigated: [], openChanges: [], saved: 0 };
(window as unknown as { __consumer: Seen }).__consumer = seen;

async function devToken(): Promise<string> {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: user, ttl_secs: 3600 }),
  });
  if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

const client = new HeraldClient({
  url: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/ws`,
  userId: user,
  getToken: devToken,
});
client.connect();

const header = { display: 'flex', alignItems: 'center', gap: 16, padding: 16 } as const;

function GermanBell() {
  const [path, setPath] = useState(location.pathname);
  const navigate = (link: string) => {
    seen.navigated.push(link);
    history.pushState(null, '', link);
    setPath(location.pathname);
  };
  return (
    <>
      <header style={{ ...header, paddingLeft: 200 }}>
        <NotificationBell
          locale="de"
          placement="bottom-start"
          labels={{
            bell: (n) => `Benachrichtigungen (${n} ungelesen)`,
            title: 'Benachrichtigungen',
            markAllRead: 'Alle als gelesen markieren',
            emptyTitle: 'Noch keine Benachrichtigungen',
          }}
          onNavigate={navigate}
        />
        <span data-testid="route">{path}</span>
      </header>
      <Toaster onNavigate={navigate} labels={{ dismissToast: 'Benachrichtigung schließen' }} />
    </>
  );
}

function CustomBell() {
  const [open, setOpen] = useState(false);
  const [veto, setVeto] = useState(false);
  return (
    <header style={{ ...header, paddingLeft: 200 }}>
      <NotificationBell
        open={open}
        onOpenChange={(v) => {
          seen.openChanges.push(v);
          if (!veto) setOpen(v);
        }}
        renderBell={({ unreadCount, open: isOpen }) => (
          <span data-testid="custom-bell">
            Inbox {unreadCount} {isOpen ? 'open' : 'shut'}
          </span>
        )}
        renderItem={(n, { unread, time }) => (
          <span data-testid="custom-item" data-unread={String(unread)}>
            [{n.type}] {n.title} · {time}
          </span>
        )}
        renderEmpty={() => <p data-testid="custom-empty">Inbox zero</p>}
      />
      <button type="button" data-testid="app-toggle" onClick={() => setOpen((o) => !o)}>
        App: {open ? 'close' : 'open'} inbox
      </button>
      <label>
        <input type="checkbox" data-testid="app-veto" checked={veto} onChange={(e) => setVeto(e.target.checked)} /> veto
      </label>
    </header>
  );
}

function DefaultBell() {
  return (
    <>
      <header style={{ display: 'flex', justifyContent: 'space-between', padding: 16 }}>
        <h1 style={{ margin: 0, font: '600 18px system-ui' }}>Consumer app</h1>
        <NotificationBell />
      </header>
      <Toaster />
    </>
  );
}

function SettingsPage() {
  return (
    <>
      <header style={{ display: 'flex', justifyContent: 'flex-end', padding: 16 }}>
        <NotificationBell settings />
      </header>
      <main style={{ maxWidth: 560, margin: '0 auto' }}>
        <NotificationPreferences
          labels={{ title: 'Benachrichtigungseinstellungen', save: 'Speichern', saved: 'Gespeichert.' }}
          onSaved={() => (seen.saved += 1)}
        />
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <HeraldProvider client={client}>
      {variant === 'de' ? <GermanBell /> : variant === 'custom' ? <CustomBell /> : variant === 'prefs' ? <SettingsPage /> : <DefaultBell />}
    </HeraldProvider>
  </StrictMode>,
);

// A third-party app that knows Herald only through the two npm tarballs (copied outside the
// repository by web/consumer/run.sh). Served by a gateway node, so the WebSocket and the API are
// same-origin; the token comes from the node's development endpoint.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { HeraldClient } from 'herald-notify-client';
import { HeraldProvider, NotificationBell, Toaster } from 'herald-notify-react';
import 'herald-notify-react/styles.css';

const user = new URLSearchParams(location.search).get('user') || 'consumer';

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

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <HeraldProvider client={client}>
      <header style={{ display: 'flex', justifyContent: 'space-between', padding: 16 }}>
        <h1 style={{ margin: 0, font: '600 18px system-ui' }}>Consumer app</h1>
        <NotificationBell />
      </header>
      <Toaster />
    </HeraldProvider>
  </StrictMode>,
);

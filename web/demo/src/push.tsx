import { useState } from 'react';
import type { HeraldClient } from 'herald-notify-client';

/** Registers the demo's service worker (public/sw.js), which shows Web Push fallbacks. */
export async function registerServiceWorker(): Promise<ServiceWorkerRegistration> {
  await navigator.serviceWorker.register('./sw.js');
  return navigator.serviceWorker.ready;
}

function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}

/** "Enable push": subscribe this browser and register it, so fallbacks reach it while offline. */
export function PushToggle({ client }: { client: HeraldClient }) {
  const supported = typeof navigator !== 'undefined' && 'serviceWorker' in navigator && typeof PushManager !== 'undefined';
  const [state, setState] = useState<'off' | 'working' | 'on' | 'error'>('off');
  const [message, setMessage] = useState('');
  if (!supported) return null;
  const toggle = async () => {
    setState('working');
    try {
      const reg = await registerServiceWorker();
      if (state === 'on') {
        await client.unregisterPush({ serviceWorker: reg });
        setState('off');
        setMessage('');
      } else {
        await client.registerPush({ serviceWorker: reg });
        setState('on');
        setMessage('Push notifications are on for this browser.');
      }
    } catch (e) {
      setState('error');
      setMessage(`Push: ${errorText(e)}`);
    }
  };
  return (
    <span className="push-toggle">
      <button className="btn btn--ghost btn--small" onClick={toggle} disabled={state === 'working'} data-testid="push-toggle" title={message || undefined}>
        {state === 'on' ? 'Disable push' : 'Enable push'}
      </button>
      {state === 'error' && (
        <span role="status" className="muted" data-testid="push-status">
          {message}
        </span>
      )}
    </span>
  );
}

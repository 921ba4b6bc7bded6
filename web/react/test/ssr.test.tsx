// @vitest-environment node
// The packages must stay SSR-safe: importing them and rendering on a server touches no `window`
// or `document`.
import { describe, expect, it } from 'vitest';
import { renderToString } from 'react-dom/server';
import { HeraldClient } from 'herald-notify-client';
import { HeraldProvider, NotificationBell, Toaster, useNotifications } from '../src';

describe('server-side rendering', () => {
  it('renders the bell and toaster without browser globals', () => {
    expect(typeof window).toBe('undefined');
    expect(typeof document).toBe('undefined');
    class NoSocket {
      readyState = 0;
      onopen = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      send() {}
      close() {}
    }
    const client = new HeraldClient({ url: 'wss://x.test/v1/ws', getToken: async () => 't', WebSocket: NoSocket as any });
    const html = renderToString(
      <HeraldProvider client={client}>
        <NotificationBell />
        <Toaster />
      </HeraldProvider>,
    );
    expect(html).toContain('data-testid="herald-bell"');
    expect(html).toContain('hn-toaster');
  });

  it('constructs a client and renders the hook on a server without WebSocket (Node 20); connecting is what needs one', () => {
    const saved = (globalThis as any).WebSocket;
    delete (globalThis as any).WebSocket; // Node 20 has none
    try {
      // The README's module-level client, with no WebSocket option.
      const client = new HeraldClient({ url: 'wss://x.test/v1/ws', getToken: async () => 't' });
      function Inbox() {
        const { unreadCount, state } = useNotifications({ url: 'wss://x.test/v1/ws', getToken: async () => 't' });
        return (
          <p>
            {state}:{unreadCount}
          </p>
        );
      }
      const html = renderToString(
        <HeraldProvider client={client}>
          <Inbox />
          <NotificationBell />
        </HeraldProvider>,
      );
      expect(html).toContain('idle');
      expect(html).toContain('data-testid="herald-bell"');
      expect(() => client.connect()).toThrow(/no WebSocket implementation/);
    } finally {
      if (saved) (globalThis as any).WebSocket = saved;
    }
  });
});

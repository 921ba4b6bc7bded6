// @vitest-environment node
// The packages must stay SSR-safe: importing them and rendering on a server touches no `window`
// or `document`.
import { describe, expect, it } from 'vitest';
import { renderToString } from 'react-dom/server';
import { HeraldClient } from 'herald-notify-client';
import { HeraldProvider, NotificationBell, Toaster } from '../src';

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
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { useState } from 'react';
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import type { Notification } from 'herald-notify-client';
import { noSocketClient } from './fixtures';
import { NotificationBell, NotificationBellView, Toaster, formatRelative, type HeraldLabels } from '../src';

afterEach(cleanup);

function notif(seq: number, over: Partial<Notification> = {}): Notification {
  return {
    id: `id-${seq}`,
    user_id: 'alice',
    seq,
    type: 'order.shipped',
    title: `Title ${seq}`,
    body: `Body ${seq}`,
    link: null,
    avatar_url: null,
    data: null,
    created_at: new Date(Date.now() - seq * 5 * 60_000).toISOString(),
    delivered_at: null,
    read_at: null,
    ...over,
  };
}

type ViewProps = Parameters<typeof NotificationBellView>[0];
function view(over: Partial<ViewProps> = {}) {
  return render(<NotificationBellView notifications={[notif(1)]} unreadCount={1} state="open" onMarkRead={vi.fn()} onMarkAllRead={vi.fn()} {...over} />);
}


const fr: Partial<HeraldLabels> = {
  bell: (n) => `Notifications (${n} non lues)`,
  title: 'Notifications',
  markAllRead: 'Tout marquer comme lu',
  unread: 'Non lu : ',
  emptyTitle: 'Aucune notification',
  emptyHint: 'Elles apparaîtront ici.',
  states: { open: 'En direct' } as HeraldLabels['states'],
  toastRegion: 'Notifications reçues',
  dismissToast: 'Fermer la notification',
  moreToasts: (n) => `+${n} autres`,
};

describe('theme', () => {
  it('follows the system by default and takes a theme prop (bell and toaster)', () => {
    view();
    expect(document.querySelector('.hn-bell')!.getAttribute('data-hn-theme')).toBe('auto');
    cleanup();
    view({ theme: 'dark' });
    expect(document.querySelector('.hn-bell')!.getAttribute('data-hn-theme')).toBe('dark');
    cleanup();
    render(<Toaster client={noSocketClient()} theme="light" />);
    expect(screen.getByTestId('herald-toaster').getAttribute('data-hn-theme')).toBe('light');
  });
});

describe('labels and locale', () => {
  it('every label of the bell and panel comes from `labels`; missing ones stay English', () => {
    view({ labels: fr, defaultOpen: true, hasMore: true, onLoadMore: vi.fn() });
    expect(screen.getByRole('button', { name: 'Notifications (1 non lues)' })).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Tout marquer comme lu' })).toBeTruthy();
    expect(screen.getByTestId('herald-status').textContent).toBe('En direct');
    expect(screen.getByTestId('herald-item').textContent).toMatch(/^Non lu : /);
    expect(screen.getByTestId('herald-load-more').textContent).toBe('Load older'); // not given: default
    cleanup();
    view({ labels: fr, defaultOpen: true, notifications: [], unreadCount: 0 });
    expect(screen.getByTestId('herald-empty').textContent).toBe('Aucune notificationElles apparaîtront ici.');
  });

  it('formats times with Intl in the given locale', () => {
    const now = Date.parse('2026-03-10T12:00:00Z');
    const sp = (s: string | null | undefined) => (s ?? '').replace(/\s/g, ' '); // Intl uses no-break spaces
    expect(sp(formatRelative('2026-03-10T11:55:00Z', now, 'fr'))).toBe('il y a 5 min');
    expect(formatRelative('2026-03-09T12:00:00Z', now, 'de')).toBe('gestern');
    expect(sp(formatRelative('2026-01-02T12:00:00Z', now, 'fr'))).toBe('2 janv.');
    expect(formatRelative('2026-03-10T11:55:00Z', now)).toBe('5m ago'); // no locale: unchanged
    view({ locale: 'fr', defaultOpen: true });
    expect(sp(screen.getByTestId('herald-item').querySelector('time')!.textContent)).toBe('il y a 5 min');
  });

  it('the toaster words come from `labels`', () => {
    const client = noSocketClient();
    render(<Toaster client={client} labels={fr} max={1} />);
    act(() => void (client as any).emit('toast', notif(1)));
    act(() => void (client as any).emit('toast', notif(2)));
    expect(screen.getByRole('region', { name: 'Notifications reçues' })).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Fermer la notification' })).toBeTruthy();
    expect(screen.getByTestId('herald-toast-more').textContent).toBe('+1 autres');
  });
});

describe('custom renderers', () => {
  it('renderItem replaces a row’s content inside its button (activation kept); renderEmpty and renderBell too', () => {
    const onMarkRead = vi.fn();
    view({
      defaultOpen: true,
      onMarkRead,
      renderItem: (n, { unread, time }) => <span data-testid="custom-row">{`${n.title}|${unread}|${time}`}</span>,
      renderBell: ({ unreadCount, open }) => <span data-testid="custom-bell">{`${unreadCount}/${open}`}</span>,
    });
    expect(screen.getByTestId('custom-row').textContent).toBe('Title 1|true|5m ago');
    expect(screen.getByTestId('custom-row').closest('button')).toBe(screen.getByTestId('herald-item'));
    fireEvent.click(screen.getByTestId('custom-row'));
    expect(onMarkRead).toHaveBeenCalledWith('id-1');
    expect(screen.getByTestId('custom-bell').textContent).toBe('1/true');
    expect(screen.getByRole('button', { name: 'Notifications (1 unread)' }).contains(screen.getByTestId('custom-bell'))).toBe(true);
    cleanup();
    view({ defaultOpen: true, notifications: [], unreadCount: 0, renderEmpty: () => <p>Inbox zero</p> });
    expect(screen.getByTestId('herald-empty').textContent).toBe('Inbox zero');
  });
});

describe('controlled open and placement', () => {
  it('follows the `open` prop and asks through onOpenChange (bell click, Escape)', () => {
    const asked: boolean[] = [];
    function Host() {
      const [open, setOpen] = useState(false);
      return (
        <>
          <NotificationBellView
            notifications={[notif(1)]}
            unreadCount={1}
            state="open"
            onMarkRead={vi.fn()}
            onMarkAllRead={vi.fn()}
            open={open}
            onOpenChange={(o) => {
              asked.push(o);
              setOpen(o);
            }}
          />
          <button onClick={() => setOpen(true)}>open from outside</button>
        </>
      );
    }
    render(<Host />);
    expect(screen.queryByRole('dialog')).toBeNull();
    fireEvent.click(screen.getByText('open from outside'));
    expect(screen.getByRole('dialog')).toBeTruthy();
    fireEvent.keyDown(document, { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    fireEvent.click(screen.getByTestId('herald-bell'));
    expect(screen.getByRole('dialog')).toBeTruthy();
    expect(asked).toEqual([false, true]);
  });

  it('a controlled panel stays as the prop says when the host ignores the request', () => {
    view({ open: true, onOpenChange: vi.fn() });
    fireEvent.keyDown(document, { key: 'Escape' });
    expect(screen.getByRole('dialog')).toBeTruthy();
  });

  it('the live bell tells the client about a controlled panel too (no toasts while open)', () => {
    const client = noSocketClient();
    const { rerender } = render(<NotificationBell client={client} open={false} onOpenChange={vi.fn()} />);
    expect(client.inboxOpen).toBe(false);
    rerender(<NotificationBell client={client} open onOpenChange={vi.fn()} />);
    expect(client.inboxOpen).toBe(true);
  });

  it('placement picks the edge the panel hangs from', () => {
    view({ defaultOpen: true });
    expect(screen.getByRole('dialog').className).toContain('hn-panel--bottom-end');
    cleanup();
    view({ defaultOpen: true, placement: 'bottom-start' });
    expect(screen.getByRole('dialog').className).toContain('hn-panel--bottom-start');
  });
});

describe('content', () => {
  it('a broken avatar falls back to the type icon', () => {
    view({ defaultOpen: true, notifications: [notif(1, { avatar_url: 'https://img.example/missing.png' })] });
    const img = screen.getByTestId('herald-avatar');
    expect(screen.getByTestId('herald-item').querySelector('.hn-item__icon')!.textContent).toBe('');
    fireEvent.error(img);
    expect(screen.queryByTestId('herald-avatar')).toBeNull();
    expect(screen.getByTestId('herald-item').querySelector('.hn-item__icon')!.textContent).toBe('📦');
  });

  it('an avatar that is not http(s) or a same-origin path is not loaded', () => {
    view({ defaultOpen: true, notifications: [notif(1, { avatar_url: 'javascript:alert(1)' })] });
    expect(screen.queryByTestId('herald-avatar')).toBeNull();
    expect(screen.getByTestId('herald-item').querySelector('.hn-item__icon')!.textContent).toBe('📦');
  });

  it('keeps line breaks of the body in the text (shown by CSS white-space: pre-line)', () => {
    view({ defaultOpen: true, notifications: [notif(1, { body: 'line one\nline two' })] });
    expect(screen.getByTestId('herald-item').querySelector('.hn-item__body')!.textContent).toBe('line one\nline two');
  });
});

describe('router integration', () => {
  it('a row with a safe link is a real link; a plain click goes through onNavigate (the router), not the browser', () => {
    const onNavigate = vi.fn();
    const onMarkRead = vi.fn();
    view({ defaultOpen: true, onNavigate, onMarkRead, notifications: [notif(1, { link: '/orders/1' })] });
    const row = screen.getByRole('link', { name: /Title 1/ });
    expect(row.getAttribute('href')).toBe('/orders/1');
    expect(row).toBe(screen.getByTestId('herald-item'));
    const click = new MouseEvent('click', { bubbles: true, cancelable: true, button: 0 });
    act(() => void row.dispatchEvent(click));
    expect(click.defaultPrevented).toBe(true);
    expect(onNavigate).toHaveBeenCalledWith('/orders/1');
    expect(onMarkRead).toHaveBeenCalledWith('id-1');
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('a modified click (new tab) is left to the browser: marked read, no router call, panel stays', () => {
    const onNavigate = vi.fn();
    const onMarkRead = vi.fn();
    view({ defaultOpen: true, onNavigate, onMarkRead, notifications: [notif(1, { link: '/orders/1' })] });
    // What the component left for the browser, seen after it ran (then stopped: jsdom cannot navigate).
    let leftToBrowser: boolean | null = null;
    const spy = (e: Event) => {
      leftToBrowser = !e.defaultPrevented;
      e.preventDefault();
    };
    window.addEventListener('click', spy);
    const click = new MouseEvent('click', { bubbles: true, cancelable: true, button: 0, ctrlKey: true });
    act(() => void screen.getByTestId('herald-item').dispatchEvent(click));
    window.removeEventListener('click', spy);
    expect(leftToBrowser).toBe(true);
    expect(onNavigate).not.toHaveBeenCalled();
    expect(onMarkRead).toHaveBeenCalledWith('id-1');
    expect(screen.getByRole('dialog')).toBeTruthy();
  });

  it('an unsafe link is never an href: the row is a button', () => {
    view({ defaultOpen: true, notifications: [notif(1, { link: 'javascript:alert(1)' })] });
    expect(screen.queryByRole('link')).toBeNull();
    expect(screen.getByTestId('herald-item').tagName).toBe('BUTTON');
  });
});

describe('every colour is a variable', () => {
  it('styles.css has colour literals only in custom property declarations', async () => {
    const { readFileSync } = await import('node:fs');
    const css = readFileSync(`${process.cwd()}/react/src/styles.css`, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    const offenders = css
      .split(/[;{}]/)
      .map((d) => d.trim())
      .filter((d) => /#[0-9a-f]{3,8}\b|rgba?\(|hsla?\(|(?<![\w-])(white|black)(?![\w-])/i.test(d) && !d.startsWith('--'));
    expect(offenders).toEqual([]);
  });
});

describe('toast links', () => {
  it('a toast with a link is a real link: a plain click is routed, a modified one is left to the browser but still marks read', () => {
    const client = noSocketClient();
    const markRead = vi.spyOn(client, 'markRead').mockResolvedValue();
    const onNavigate = vi.fn();
    render(<Toaster client={client} onNavigate={onNavigate} />);
    act(() => void (client as any).emit('toast', notif(1, { link: '/orders/1', title: 'One' })));
    act(() => void (client as any).emit('toast', notif(2, { link: '/orders/2', title: 'Two' })));
    const one = screen.getByRole('link', { name: /One/ });
    expect(one.getAttribute('href')).toBe('/orders/1');
    const plain = new MouseEvent('click', { bubbles: true, cancelable: true, button: 0 });
    act(() => void one.dispatchEvent(plain));
    expect(plain.defaultPrevented).toBe(true);
    expect(onNavigate).toHaveBeenCalledWith('/orders/1');
    let leftToBrowser: boolean | null = null;
    const spy = (e: Event) => {
      leftToBrowser = !e.defaultPrevented;
      e.preventDefault(); // jsdom cannot navigate
    };
    window.addEventListener('click', spy);
    act(() => void screen.getByRole('link', { name: /Two/ }).dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true, button: 0, metaKey: true })));
    window.removeEventListener('click', spy);
    expect(leftToBrowser).toBe(true);
    expect(onNavigate).toHaveBeenCalledTimes(1);
    expect(markRead.mock.calls.map((c) => c[0])).toEqual(['id-1', 'id-2']);
    expect(screen.queryByTestId('herald-toast')).toBeNull();
  });
});

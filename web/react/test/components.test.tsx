import { afterEach, describe, expect, it, vi } from 'vitest';
import { useState } from 'react';
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import type { Notification } from 'herald-notify-client';
import { noSocketClient, toastClient as fixtureToastClient } from './fixtures';
import { NotificationBell, NotificationBellView, Toaster, badgeText, connectionStateLabel, formatRelative, iconFor } from '../src';

afterEach(cleanup);

function notif(seq: number, read = false): Notification {
  return {
    id: `id-${seq}`,
    user_id: 'alice',
    seq,
    type: 'comment.created',
    title: `Title ${seq}`,
    body: `Body ${seq}`,
    link: null,
    avatar_url: null,
    data: null,
    created_at: new Date(Date.now() - seq * 60_000).toISOString(),
    delivered_at: null,
    read_at: read ? new Date().toISOString() : null,
  };
}

function bell(over: Partial<Parameters<typeof NotificationBellView>[0]> = {}) {
  const props = {
    notifications: [notif(2), notif(1, true)],
    unreadCount: 1,
    state: 'open' as const,
    onMarkRead: vi.fn(),
    onMarkAllRead: vi.fn(),
    ...over,
  };
  render(<NotificationBellView {...props} />);
  return props;
}

describe('helpers', () => {
  it('badge text caps at 99+', () => {
    expect(badgeText(5)).toBe('5');
    expect(badgeText(99)).toBe('99');
    expect(badgeText(100)).toBe('99+');
  });
  it('formats relative times', () => {
    const now = Date.parse('2026-03-10T12:00:00Z');
    expect(formatRelative('2026-03-10T11:59:50Z', now)).toBe('just now');
    expect(formatRelative('2026-03-10T11:55:00Z', now)).toBe('5m ago');
    expect(formatRelative('2026-03-10T09:00:00Z', now)).toBe('3h ago');
    expect(formatRelative('2026-03-09T12:00:00Z', now)).toBe('yesterday');
    expect(formatRelative('2026-03-06T12:00:00Z', now)).toBe('4d ago');
    expect(formatRelative('2026-01-02T12:00:00Z', now)).toBe('Jan 2');
    expect(formatRelative('2025-01-02T12:00:00Z', now)).toBe('Jan 2, 2025');
  });
  it('picks icons by type prefix', () => {
    expect(iconFor('comment.created')).toBe('💬');
    expect(iconFor('mention:comment')).toBe('@');
    expect(iconFor('order:status_changed')).toBe('📦');
    expect(iconFor('task.assigned')).toBe('✅');
    expect(iconFor('payment.processed')).toBe('💳');
    expect(iconFor('system.alert')).toBe('⚠️');
    expect(iconFor('something')).toBe('🔔');
  });
});

describe('<NotificationBellView />', () => {
  it('labels the button with the unread count', () => {
    bell({ unreadCount: 3 });
    expect(screen.getByRole('button', { name: 'Notifications (3 unread)' })).toBeTruthy();
    expect(screen.getByTestId('herald-badge').textContent).toBe('3');
  });

  it('shows 99+ above 99 and no badge at 0', () => {
    bell({ unreadCount: 150 });
    expect(screen.getByTestId('herald-badge').textContent).toBe('99+');
    expect(screen.getByRole('button', { name: 'Notifications (150 unread)' })).toBeTruthy();
    cleanup();
    bell({ unreadCount: 0 });
    expect(screen.queryByTestId('herald-badge')).toBeNull();
  });

  it('opens a dialog with a list of item buttons; unread items are styled; Escape closes and restores focus', () => {
    bell();
    const button = screen.getByTestId('herald-bell');
    expect(button.getAttribute('aria-expanded')).toBe('false');
    fireEvent.click(button);
    expect(button.getAttribute('aria-expanded')).toBe('true');
    const dialog = screen.getByRole('dialog', { name: 'Notifications' });
    expect(button.getAttribute('aria-controls')).toBe(dialog.id);
    const items = screen.getAllByTestId('herald-item');
    expect(items).toHaveLength(2);
    expect(items[0]!.className).toContain('is-unread');
    expect(items[0]!.querySelector('.hn-item__dot')).not.toBeNull();
    expect(items[1]!.className).not.toContain('is-unread');
    fireEvent.keyDown(document, { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(document.activeElement).toBe(button);
  });

  it('closes on a click outside', () => {
    bell({ defaultOpen: true });
    expect(screen.getByRole('dialog')).toBeTruthy();
    fireEvent.mouseDown(document.body);
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('shows the empty state', () => {
    bell({ notifications: [], unreadCount: 0, defaultOpen: true });
    expect(screen.getByText('No notifications yet')).toBeTruthy();
  });

  it.each(['connecting', 'reconnecting', 'offline', 'idle'] as const)('never shows the empty state while %s', (state) => {
    bell({ notifications: [], unreadCount: 0, defaultOpen: true, state });
    expect(screen.queryByTestId('herald-empty')).toBeNull();
    expect(screen.queryByText('No notifications yet')).toBeNull();
    expect(screen.getByTestId('herald-pending')).toBeTruthy();
  });

  it('an unreachable server shows the reason and a Retry action, not the empty state', () => {
    const onRetry = vi.fn();
    bell({
      notifications: [],
      unreadCount: 0,
      defaultOpen: true,
      state: 'reconnecting',
      error: { code: 1006, message: 'could not connect to ws://x/v1/ws (closed with 1006)' },
      onRetry,
    });
    expect(screen.queryByText('No notifications yet')).toBeNull();
    const box = screen.getByTestId('herald-error');
    expect(box.textContent).toContain('Can’t reach the notification server.');
    expect(box.textContent).toContain('closed with 1006');
    fireEvent.click(screen.getByRole('button', { name: 'Retry' }));
    expect(onRetry).toHaveBeenCalledTimes(1);
  });

  it('a bad token (4001) shows why and offers Retry', () => {
    const onRetry = vi.fn();
    bell({ notifications: [], unreadCount: 0, defaultOpen: true, state: 'error', error: { code: 4001, message: 'unauthorized: bad signature' }, onRetry });
    const box = screen.getByTestId('herald-error');
    expect(box.textContent).toContain('The server refused your sign-in (unauthorized).');
    expect(box.textContent).toContain('unauthorized: bad signature');
    expect(screen.getByRole('button', { name: 'Retry' })).toBeTruthy();
  });

  it('a failed load while live is an error, not an empty inbox; with items it is a banner', () => {
    bell({ notifications: [], unreadCount: 0, defaultOpen: true, error: { code: 'network', message: 'network error: Failed to fetch' }, onRetry: vi.fn() });
    expect(screen.queryByText('No notifications yet')).toBeNull();
    expect(screen.getByTestId('herald-error').textContent).toContain('Failed to fetch');
    cleanup();
    bell({ defaultOpen: true, error: { code: 'network', message: 'network error: Failed to fetch' }, onRetry: vi.fn() });
    expect(screen.getByRole('alert').textContent).toContain('Can’t reach the notification server.');
    expect(screen.getAllByTestId('herald-item')).toHaveLength(2);
    expect(screen.getByRole('button', { name: 'Retry' })).toBeTruthy();
  });

  it('a failed Load older is shown', () => {
    bell({ defaultOpen: true, hasMore: true, onLoadMore: vi.fn(), actionError: { action: 'load_more', code: 'network', message: 'network error' } });
    expect(screen.getByRole('alert').textContent).toContain('Couldn’t load older notifications.');
  });

  it('Mark all as read calls the handler and is disabled with nothing unread', () => {
    const p = bell({ defaultOpen: true });
    fireEvent.click(screen.getByRole('button', { name: 'Mark all as read' }));
    expect(p.onMarkAllRead).toHaveBeenCalledTimes(1);
    cleanup();
    bell({ defaultOpen: true, unreadCount: 0, notifications: [notif(1, true)] });
    expect((screen.getByRole('button', { name: 'Mark all as read' }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('is keyboard accessible: ArrowDown opens and focuses, arrows move, Enter marks read', () => {
    const p = bell();
    const button = screen.getByTestId('herald-bell');
    fireEvent.keyDown(button, { key: 'ArrowDown' });
    const items = screen.getAllByTestId('herald-item');
    expect(document.activeElement).toBe(items[0]);
    fireEvent.keyDown(items[0]!, { key: 'ArrowDown' });
    expect(document.activeElement).toBe(items[1]);
    fireEvent.keyDown(items[1]!, { key: 'ArrowUp' });
    expect(document.activeElement).toBe(items[0]);
    fireEvent.keyDown(items[0]!, { key: 'End' });
    expect(document.activeElement).toBe(items[1]);
    fireEvent.keyDown(items[1]!, { key: 'Home' });
    expect(document.activeElement).toBe(items[0]);
    // Items are buttons: Enter or Space is a click (the browser's, not a key handler's).
    expect(items[0]!.tagName).toBe('BUTTON');
    fireEvent.click(items[0]!);
    expect(p.onMarkRead).toHaveBeenCalledWith('id-2');
  });

  it('clicking an item with a link marks it read and navigates', () => {
    const onNavigate = vi.fn();
    const p = bell({ defaultOpen: true, onNavigate, notifications: [{ ...notif(3), link: '/posts/7' }] });
    fireEvent.click(screen.getByTestId('herald-item'));
    expect(p.onMarkRead).toHaveBeenCalledWith('id-3');
    expect(onNavigate).toHaveBeenCalledWith('/posts/7');
  });

  it('shows a failed action in the panel until dismissed', () => {
    const onDismissActionError = vi.fn();
    bell({
      defaultOpen: true,
      actionError: { action: 'mark_all_read', code: 'network', message: 'network error: Failed to fetch' },
      onDismissActionError,
    });
    const alert = screen.getByRole('alert');
    expect(alert.textContent).toContain('Couldn’t mark all as read');
    expect(alert.textContent).toContain('network error: Failed to fetch');
    fireEvent.click(screen.getByRole('button', { name: 'Dismiss' }));
    expect(onDismissActionError).toHaveBeenCalledTimes(1);
  });

  it('activating an item with a link closes the panel and gives focus back to the bell', () => {
    const onNavigate = vi.fn();
    bell({ onNavigate, notifications: [{ ...notif(3), link: '/posts/7' }] });
    const button = screen.getByTestId('herald-bell');
    fireEvent.keyDown(button, { key: 'ArrowDown' });
    const item = screen.getByTestId('herald-item');
    expect(document.activeElement).toBe(item);
    fireEvent.click(item); // Enter on a focused button
    expect(onNavigate).toHaveBeenCalledWith('/posts/7');
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(document.activeElement).toBe(button);
  });

  it('Load older keeps keyboard focus: on the button while loading, then on the first older item', () => {
    const older = [notif(5), notif(6)];
    function Harness() {
      const [list, setList] = useState([notif(1), notif(2)]);
      const [loading, setLoading] = useState(false);
      return (
        <>
          <NotificationBellView
            notifications={list}
            unreadCount={0}
            state="open"
            loading={loading}
            hasMore={list.length < 4}
            defaultOpen
            onMarkRead={() => undefined}
            onMarkAllRead={() => undefined}
            onLoadMore={() => setLoading(true)}
          />
          <button onClick={() => (setList((l) => [...l, ...older]), setLoading(false))}>finish</button>
        </>
      );
    }
    render(<Harness />);
    const more = screen.getByTestId('herald-load-more');
    act(() => more.focus());
    fireEvent.click(more);
    expect(document.activeElement).toBe(screen.getByTestId('herald-load-more'));
    fireEvent.click(screen.getByText('finish'));
    expect(document.activeElement).toBe(screen.getAllByTestId('herald-item')[2]);
    expect(document.activeElement?.getAttribute('data-id')).toBe('id-5');
  });

  it('the last Load older (nothing older on the server) puts focus on the last row, not <body>', () => {
    function Harness() {
      const [hasMore, setHasMore] = useState(true);
      const [loading, setLoading] = useState(false);
      return (
        <>
          <NotificationBellView
            notifications={[notif(1), notif(2)]}
            unreadCount={0}
            state="open"
            loading={loading}
            hasMore={hasMore}
            defaultOpen
            onMarkRead={() => undefined}
            onMarkAllRead={() => undefined}
            onLoadMore={() => setLoading(true)}
          />
          <button onClick={() => setLoading(false)}>between pages</button>
          <button onClick={() => setLoading(true)}>next page</button>
          <button onClick={() => (setHasMore(false), setLoading(false))}>finish</button>
        </>
      );
    }
    render(<Harness />);
    const more = screen.getByTestId('herald-load-more');
    act(() => more.focus());
    fireEvent.click(more);
    // The client pages on through what it already holds: loading drops between pages.
    act(() => void screen.getByText('between pages').click());
    act(() => more.focus()); // (clicking the harness's button moved focus; a real client does not)
    act(() => void screen.getByText('next page').click());
    act(() => more.focus());
    fireEvent.click(screen.getByText('finish'));
    expect(screen.queryByTestId('herald-load-more')).toBeNull();
    expect(document.activeElement?.getAttribute('data-id')).toBe('id-2');
  });

  it('Retry after a failed list load keeps focus in the panel', () => {
    function Harness() {
      const [failed, setFailed] = useState(true);
      return (
        <NotificationBellView
          notifications={[]}
          unreadCount={0}
          state="open"
          loading={!failed}
          error={failed ? { code: 'network', message: 'network error: Failed to fetch' } : null}
          onRetry={() => setFailed(false)}
          defaultOpen
          onMarkRead={() => undefined}
          onMarkAllRead={() => undefined}
        />
      );
    }
    render(<Harness />);
    const retry = screen.getByTestId('herald-retry');
    act(() => retry.focus());
    fireEvent.click(retry);
    expect(screen.queryByTestId('herald-retry')).toBeNull();
    expect(screen.getByTestId('herald-panel').contains(document.activeElement)).toBe(true);
  });

  it('Mark all as read from the keyboard keeps focus in the panel (the button becomes disabled)', () => {
    function Harness() {
      const [read, setRead] = useState(false);
      return (
        <NotificationBellView
          notifications={[notif(2, read), notif(1, read)]}
          unreadCount={read ? 0 : 2}
          state="open"
          defaultOpen
          onMarkRead={() => undefined}
          onMarkAllRead={() => setRead(true)}
        />
      );
    }
    render(<Harness />);
    const all = screen.getByRole('button', { name: 'Mark all as read' });
    act(() => all.focus());
    fireEvent.click(all);
    expect((all as HTMLButtonElement).disabled).toBe(true);
    expect(document.activeElement).toBe(screen.getAllByTestId('herald-item')[0]);
  });

  it('tabbing out of the panel closes it', () => {
    render(
      <>
        <NotificationBellView notifications={[notif(1)]} unreadCount={1} state="open" defaultOpen onMarkRead={vi.fn()} onMarkAllRead={vi.fn()} />
        <button>elsewhere</button>
      </>,
    );
    const item = screen.getByTestId('herald-item');
    act(() => item.focus());
    act(() => screen.getByText('elsewhere').focus());
    expect(screen.queryByRole('dialog')).toBeNull();
  });

  it('has no View all link unless given somewhere to go', () => {
    bell({ defaultOpen: true });
    expect(screen.queryByRole('link', { name: 'View all notifications' })).toBeNull();
  });

  it('names connection states one way (the bell and connectionStateLabel agree)', () => {
    bell({ defaultOpen: true, state: 'reconnecting' });
    expect(connectionStateLabel('open')).toBe('Live');
    expect(connectionStateLabel('reconnecting')).toBe('Reconnecting…');
    expect(screen.getByRole('dialog').querySelector('.hn-panel__status')!.textContent).toBe(connectionStateLabel('reconnecting'));
  });

  it('caps the first render (1,000 pending → 50 rows) and reveals held rows before fetching older ones', () => {
    const many = Array.from({ length: 1000 }, (_, i) => notif(1000 - i));
    const onLoadMore = vi.fn();
    bell({ notifications: many, unreadCount: 1000, defaultOpen: true, hasMore: true, onLoadMore });
    expect(screen.getAllByTestId('herald-item')).toHaveLength(50);
    expect(document.querySelectorAll('.hn-panel *').length).toBeLessThan(700);
    fireEvent.click(screen.getByTestId('herald-load-more'));
    expect(screen.getAllByTestId('herald-item')).toHaveLength(100);
    expect(onLoadMore).not.toHaveBeenCalled();
    cleanup();
    const p = bell({ notifications: many.slice(0, 60), defaultOpen: true, hasMore: true, onLoadMore });
    fireEvent.click(screen.getByTestId('herald-load-more'));
    expect(screen.getAllByTestId('herald-item')).toHaveLength(60);
    expect(onLoadMore).not.toHaveBeenCalled();
    fireEvent.click(screen.getByTestId('herald-load-more'));
    expect(onLoadMore).toHaveBeenCalledTimes(1);
    void p;
  });

  it('keeps at most two pages in the DOM however far back the user pages; Show newer pages back', () => {
    const many = Array.from({ length: 1000 }, (_, i) => notif(1000 - i));
    bell({ notifications: many, unreadCount: 1000, defaultOpen: true, hasMore: true, onLoadMore: vi.fn() });
    for (let i = 0; i < 6; i++) fireEvent.click(screen.getByTestId('herald-load-more'));
    const rows = screen.getAllByTestId('herald-item');
    expect(rows).toHaveLength(100);
    // limit 350: rows 250..349, i.e. seq 750 down to 651
    expect(rows[0]!.getAttribute('data-id')).toBe('id-750');
    expect(rows[99]!.getAttribute('data-id')).toBe('id-651');
    expect(document.activeElement?.getAttribute('data-id')).toBe('id-700'); // the first row just revealed
    fireEvent.click(screen.getByTestId('herald-show-newer'));
    expect(screen.getAllByTestId('herald-item')[0]!.getAttribute('data-id')).toBe('id-800');
    expect(screen.getAllByTestId('herald-item')).toHaveLength(100);
    for (let i = 0; i < 10; i++) if (screen.queryByTestId('herald-show-newer')) fireEvent.click(screen.getByTestId('herald-show-newer'));
    expect(screen.queryByTestId('herald-show-newer')).toBeNull();
    expect(screen.getAllByTestId('herald-item')[0]!.getAttribute('data-id')).toBe('id-1000');
  });

  it('offers no Load older once everything is shown and the server has no more', () => {
    bell({ notifications: Array.from({ length: 60 }, (_, i) => notif(60 - i)), defaultOpen: true, hasMore: false, onLoadMore: vi.fn() });
    fireEvent.click(screen.getByTestId('herald-load-more'));
    expect(screen.getAllByTestId('herald-item')).toHaveLength(60);
    expect(screen.queryByTestId('herald-load-more')).toBeNull();
  });

  it('has a View all link', () => {
    bell({ defaultOpen: true, viewAllHref: '/inbox' });
    expect(screen.getByRole('link', { name: 'View all notifications' }).getAttribute('href')).toBe('/inbox');
  });
});

describe('<Toaster />', () => {
  it('shows a toast with icon, title and body on the toast event, navigates on click, auto-dismisses after 5 s', () => {
    vi.useFakeTimers();
    const client = noSocketClient();
    vi.spyOn(client, 'markRead').mockResolvedValue();
    const onNavigate = vi.fn();
    render(<Toaster client={client} onNavigate={onNavigate} />);
    act(() => {
      (client as any).emit('toast', { ...notif(1), type: 'order.shipped', title: 'Shipped', body: 'On its way', link: '/orders/1' });
    });
    const toast = screen.getByTestId('herald-toast');
    expect(toast.textContent).toContain('📦');
    expect(toast.textContent).toContain('Shipped');
    expect(toast.textContent).toContain('On its way');
    act(() => {
      (client as any).emit('toast', { ...notif(2), title: 'Second' });
    });
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(2);
    fireEvent.click(screen.getByRole('link', { name: /Shipped/ })); // it has a link: a real one
    expect(onNavigate).toHaveBeenCalledWith('/orders/1');
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(1);
    act(() => {
      vi.advanceTimersByTime(5001);
    });
    expect(screen.queryByTestId('herald-toast')).toBeNull();
    vi.useRealTimers();
  });

  const toastClient = () => fixtureToastClient(notif);

  it('activating a focused toast moves focus to the next toast, then to the bell — not <body>', () => {
    const { client, toast } = toastClient();
    render(
      <>
        <button data-testid="herald-bell">bell</button>
        <Toaster client={client} onNavigate={vi.fn()} />
      </>,
    );
    toast(1);
    toast(2);
    const [first] = screen.getAllByTestId('herald-toast-open');
    act(() => first.focus());
    fireEvent.click(first);
    expect(document.activeElement).toBe(screen.getByTestId('herald-toast-open'));
    fireEvent.click(screen.getByTestId('herald-toast-open'));
    expect(screen.queryByTestId('herald-toast')).toBeNull();
    expect(document.activeElement).toBe(screen.getByTestId('herald-bell'));
  });

  it('clicking a toast marks its notification read', () => {
    const { client, markRead, toast } = toastClient();
    render(<Toaster client={client} onNavigate={vi.fn()} />);
    toast(1);
    fireEvent.click(screen.getByTestId('herald-toast-open'));
    expect(markRead).toHaveBeenCalledWith('id-1');
    expect(screen.queryByTestId('herald-toast')).toBeNull();
  });

  it('shows no toasts while the panel is open, and opening it clears them', () => {
    const { client, toast } = toastClient();
    render(<Toaster client={client} />);
    toast(1);
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(1);
    act(() => client.setInboxOpen(true));
    expect(screen.queryByTestId('herald-toast')).toBeNull();
    act(() => client.setInboxOpen(false));
    expect(screen.queryByTestId('herald-toast')).toBeNull(); // the panel showed it: not back
  });

  it('the live bell tells the client when its panel is open', () => {
    const { client } = toastClient();
    render(<NotificationBell client={client} />);
    expect(client.inboxOpen).toBe(false);
    fireEvent.click(screen.getByTestId('herald-bell'));
    expect(client.inboxOpen).toBe(true);
    fireEvent.keyDown(document, { key: 'Escape' });
    expect(client.inboxOpen).toBe(false);
  });

  it('a burst shows at most 3 plus "+N more"', () => {
    const { client, toast } = toastClient();
    render(<Toaster client={client} />);
    for (let i = 1; i <= 7; i++) toast(i);
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(3);
    expect(screen.getByTestId('herald-toast-more').textContent).toBe('+4 more');
  });

  it('keyboard focus pauses the dismiss timer', () => {
    vi.useFakeTimers();
    const { client, toast } = toastClient();
    render(<Toaster client={client} durationMs={5000} />);
    toast(1);
    const el = screen.getByTestId('herald-toast-open');
    act(() => el.focus());
    act(() => void vi.advanceTimersByTime(8000));
    expect(screen.getByTestId('herald-toast')).toBeTruthy();
    act(() => el.blur());
    act(() => void vi.advanceTimersByTime(5001));
    expect(screen.queryByTestId('herald-toast')).toBeNull();
    vi.useRealTimers();
  });

  it('a toast goes away when its notification is read elsewhere', () => {
    const { client, toast } = toastClient();
    render(<Toaster client={client} />);
    toast(1);
    toast(2);
    toast(5);
    act(() => void (client as any).emit('read', { ids: ['id-1'], up_to_seq: null, read_at: 'x' }));
    expect(screen.getAllByTestId('herald-toast').map((t) => t.getAttribute('data-id'))).toEqual(['id-5', 'id-2']);
    act(() => void (client as any).emit('read', { ids: [], up_to_seq: 5, read_at: 'x' }));
    expect(screen.queryByTestId('herald-toast')).toBeNull();
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import type { ConnectionState, Notification } from 'herald-notify-client';
import { toastClient as fixtureToastClient } from './fixtures';
import { NotificationBellView, Toaster } from '../src';

afterEach(cleanup);

function notif(seq: number, read = false, over: Partial<Notification> = {}): Notification {
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
    ...over,
  };
}

function view(state: ConnectionState = 'open', over: Partial<Parameters<typeof NotificationBellView>[0]> = {}) {
  return render(
    <NotificationBellView
      notifications={[notif(2), notif(1, true)]}
      unreadCount={1}
      state={state}
      onMarkRead={vi.fn()}
      onMarkAllRead={vi.fn()}
      {...over}
    />,
  );
}

describe('panel semantics', () => {
  it('is a labelled dialog holding a plain list whose rows are buttons, not a menu of menuitems', () => {
    view('open', { defaultOpen: true, hasMore: true, onLoadMore: vi.fn() });
    const dialog = screen.getByRole('dialog', { name: 'Notifications' });
    expect(dialog.querySelectorAll('[role="menu"],[role="menuitem"],[role="none"]')).toHaveLength(0);
    const list = within(dialog).getByRole('list', { name: 'Notifications' });
    const rows = within(list).getAllByRole('listitem');
    expect(rows).toHaveLength(3); // two notifications + "Load older"
    for (const row of rows) expect(within(row).getAllByRole('button')).toHaveLength(1);
  });

  it('names each row by its visible text (no aria-label replacing it); unread said in words', () => {
    view('open', { defaultOpen: true });
    const [unread, read] = screen.getAllByTestId('herald-item');
    for (const el of [unread!, read!]) expect(el.hasAttribute('aria-label')).toBe(false);
    expect(screen.getByRole('button', { name: /^Unread: Title 2 ?Body 2/ })).toBe(unread);
    expect(screen.getByRole('button', { name: /^Title 1 ?Body 1/ })).toBe(read);
  });

  it('one row is in the tab order (roving focus); arrows reach the rest', () => {
    view('open', { defaultOpen: true });
    const items = screen.getAllByTestId('herald-item');
    expect(items.map((i) => i.tabIndex)).toEqual([0, -1]);
  });

  it('the bell is named by its own text (no aria-label) and described by the connection state in words', () => {
    view('reconnecting');
    const bell = screen.getByTestId('herald-bell');
    expect(bell.hasAttribute('aria-label')).toBe(false);
    expect(screen.getByRole('button', { name: 'Notifications (1 unread)' })).toBe(bell);
    const desc = document.getElementById(bell.getAttribute('aria-describedby')!);
    expect(desc?.textContent).toBe('Reconnecting…');
  });

  it('shows the connection state by shape as well as colour', () => {
    const shapes: Record<string, string> = {};
    for (const s of ['open', 'connecting', 'error', 'offline'] as const) {
      view(s);
      const svg = screen.getByTestId('herald-conn').querySelector('svg')!;
      shapes[s] = svg.getAttribute('data-shape')!;
      expect(svg.innerHTML).not.toBe('');
      cleanup();
    }
    expect(shapes).toEqual({ open: 'live', connecting: 'pending', error: 'down', offline: 'offline' });
    expect(new Set(Object.values(shapes)).size).toBe(4);
  });
});

describe('toasts', () => {
  const toastClient = () => fixtureToastClient(notif);

  it('one live region, with no live regions inside it; toasts are not focusable divs', () => {
    const { client, toast } = toastClient();
    const { container } = render(<Toaster client={client} />);
    toast(1);
    toast(2);
    const live = container.querySelectorAll('[aria-live],[role="status"],[role="alert"],[role="log"]');
    expect(live).toHaveLength(1);
    expect(live[0]!.getAttribute('aria-live')).toBe('polite');
    for (const t of screen.getAllByTestId('herald-toast')) {
      expect(t.hasAttribute('role')).toBe(false);
      expect(t.hasAttribute('tabindex')).toBe(false);
    }
  });

  it('its actions are buttons: open (named by the toast text) and dismiss; Escape inside dismisses', () => {
    const { client, markRead, toast } = toastClient();
    render(<Toaster client={client} />);
    toast(1, { title: 'Shipped', body: 'On its way' });
    toast(2);
    const open = screen.getByRole('button', { name: 'Shipped On its way' });
    expect(open.tagName).toBe('BUTTON');
    expect(screen.getAllByRole('button', { name: 'Dismiss notification' })).toHaveLength(2);
    fireEvent.keyDown(open, { key: 'Escape' });
    expect(screen.getAllByTestId('herald-toast').map((t) => t.getAttribute('data-id'))).toEqual(['id-2']);
    expect(markRead).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole('button', { name: 'Dismiss notification' }));
    expect(screen.queryByTestId('herald-toast')).toBeNull();
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import type { ListFilter, Notification } from 'herald-notify-client';
import { noSocketClient } from './fixtures';
import { NotificationBell, NotificationBellView, Toaster } from '../src';

afterEach(cleanup);

function notif(seq: number, over: Partial<Notification> = {}): Notification {
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
    read_at: null,
    ...over,
  };
}

function view(over: Partial<Parameters<typeof NotificationBellView>[0]> = {}) {
  const props = {
    notifications: [notif(3), notif(2, { read_at: 'x' }), notif(1, { read_at: 'x', archived_at: 'x' })],
    unreadCount: 1,
    state: 'open' as const,
    onMarkRead: vi.fn(),
    onMarkAllRead: vi.fn(),
    onArchive: vi.fn(),
    onUnarchive: vi.fn(),
    onMarkUnread: vi.fn(),
    onDelete: vi.fn(),
    filter: { archived: false, unread: false } as ListFilter,
    onFilterChange: vi.fn(),
    defaultOpen: true,
    ...over,
  };
  render(<NotificationBellView {...props} />);
  return props;
}

describe('per-item actions', () => {
  it('shows the actions that apply to each row, named with the row title', () => {
    const p = view();
    const rows = screen.getAllByRole('listitem');
    // Unread, not archived: archive and delete (no "mark as unread").
    expect(within(rows[0]!).queryByRole('button', { name: /Mark as unread/ })).toBeNull();
    fireEvent.click(within(rows[0]!).getByRole('button', { name: 'Archive: Title 3' }));
    expect(p.onArchive).toHaveBeenCalledWith('id-3');
    // Read: mark as unread.
    fireEvent.click(within(rows[1]!).getByRole('button', { name: 'Mark as unread: Title 2' }));
    expect(p.onMarkUnread).toHaveBeenCalledWith('id-2');
    // Archived: unarchive instead of archive; no "mark as unread".
    expect(within(rows[2]!).queryByRole('button', { name: /^Archive/ })).toBeNull();
    expect(within(rows[2]!).queryByRole('button', { name: /Mark as unread/ })).toBeNull();
    fireEvent.click(within(rows[2]!).getByRole('button', { name: 'Unarchive: Title 1' }));
    expect(p.onUnarchive).toHaveBeenCalledWith('id-1');
    fireEvent.click(within(rows[2]!).getByRole('button', { name: 'Delete: Title 1' }));
    expect(p.onDelete).toHaveBeenCalledWith('id-1');
    // The row's own control is not triggered by the actions.
    expect(p.onMarkRead).not.toHaveBeenCalled();
  });

  it('has no action buttons without handlers (the view stays as before)', () => {
    render(
      <NotificationBellView notifications={[notif(1)]} unreadCount={1} state="open" onMarkRead={vi.fn()} onMarkAllRead={vi.fn()} defaultOpen />,
    );
    expect(screen.queryByTestId('herald-item-actions')).toBeNull();
    expect(screen.queryByTestId('herald-filters')).toBeNull();
  });
});

describe('filters', () => {
  it('Inbox / Unread / Archived are toggle buttons reporting the filter', () => {
    const p = view({ types: ['comment.created', 'mention'] });
    const group = screen.getByRole('group', { name: 'Show' });
    const inbox = within(group).getByRole('button', { name: 'Inbox' });
    expect(inbox.getAttribute('aria-pressed')).toBe('true');
    expect(within(group).getByRole('button', { name: 'Archived' }).getAttribute('aria-pressed')).toBe('false');
    fireEvent.click(within(group).getByRole('button', { name: 'Unread' }));
    expect(p.onFilterChange).toHaveBeenLastCalledWith({ archived: false, unread: true });
    fireEvent.click(within(group).getByRole('button', { name: 'Archived' }));
    expect(p.onFilterChange).toHaveBeenLastCalledWith({ archived: true, unread: false });
    fireEvent.change(screen.getByRole('combobox', { name: 'Type' }), { target: { value: 'mention' } });
    expect(p.onFilterChange).toHaveBeenLastCalledWith({ archived: false, unread: false, type: 'mention' });
  });
});

describe('live bell', () => {
  it('starts on the inbox filter and wires the actions to the client', async () => {
    const client = noSocketClient();
    const archive = vi.spyOn(client, 'archive').mockResolvedValue({} as never);
    const del = vi.spyOn(client, 'delete').mockResolvedValue({} as never);
    (client as any).byId.set('id-5', notif(5));
    (client as any).sorted = null;
    render(<NotificationBell client={client} defaultOpen />);
    expect(client.filter).toEqual({ archived: false, unread: false, type: null });
    await act(async () => undefined);
    fireEvent.click(screen.getByRole('button', { name: 'Archive: Title 5' }));
    expect(archive).toHaveBeenCalledWith('id-5');
    fireEvent.click(screen.getByRole('button', { name: 'Delete: Title 5' }));
    expect(del).toHaveBeenCalledWith('id-5');
    fireEvent.click(screen.getByRole('button', { name: 'Archived' }));
    expect(client.filter.archived).toBe(true);
    client.close();
  });
});

describe('toasts and seen', () => {
  it('a toast shown in a visible tab reports its notification seen', () => {
    const client = noSocketClient();
    const markSeen = vi.spyOn(client, 'markSeen').mockResolvedValue();
    render(<Toaster client={client} />);
    const vis = vi.spyOn(document, 'visibilityState', 'get').mockReturnValue('visible');
    act(() => void (client as any).emit('toast', notif(4)));
    expect(markSeen).toHaveBeenCalledWith(4);
    vis.mockReturnValue('hidden');
    act(() => void (client as any).emit('toast', notif(5)));
    expect(markSeen).toHaveBeenCalledTimes(1);
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(2);
    // Deleted elsewhere: its toast goes.
    act(() => void (client as any).emit('lifecycle', { action: 'delete', ids: ['id-4'] }));
    expect(screen.getAllByTestId('herald-toast')).toHaveLength(1);
  });
});

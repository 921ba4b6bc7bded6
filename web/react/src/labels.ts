import type { ActionError, ConnectionState } from 'herald-notify-client';
import { describeError } from './format';

/**
 * Every word the bell and the toasts show or announce. Pass a partial set as `labels` to
 * translate or reword; anything left out falls back to the English default.
 */
export interface HeraldLabels {
  /** The bell's accessible name, e.g. "Notifications (3 unread)". */
  bell: (unreadCount: number) => string;
  /** The panel's heading and the list's name. */
  title: string;
  markAllRead: string;
  /** Read out before an unread row's text (it is shown by weight and a dot). */
  unread: string;
  loadOlder: string;
  loading: string;
  showNewer: string;
  viewAll: string;
  emptyTitle: string;
  emptyHint: string;
  retry: string;
  dismiss: string;
  /** Per-notification actions (each button also reads out the notification's title). */
  archive: string;
  unarchive: string;
  markUnread: string;
  deleteItem: string;
  /** The filter buttons above the list, and their group's name. */
  filters: string;
  filterInbox: string;
  filterUnread: string;
  filterArchived: string;
  /** The type filter's label, and its "every type" option. */
  typeFilter: string;
  allTypes: string;
  /** Connection states, as the panel header and the bell's description say them. */
  states: Record<ConnectionState, string>;
  /** The hint under the state while there is nothing to show yet. */
  pendingHints: Record<ConnectionState, string>;
  /** A user action that failed and was undone. */
  actionFailed: Record<ActionError['action'], string>;
  /** A connection or loading error's short reason. */
  describeError: (err: { code: number | string; message: string }) => string;
  /** The toasts' live region. */
  toastRegion: string;
  dismissToast: string;
  moreToasts: (count: number) => string;
}

export const defaultLabels: HeraldLabels = {
  bell: (n) => `Notifications (${n} unread)`,
  title: 'Notifications',
  markAllRead: 'Mark all as read',
  unread: 'Unread: ',
  loadOlder: 'Load older',
  loading: 'Loading…',
  showNewer: 'Show newer',
  viewAll: 'View all notifications',
  emptyTitle: 'No notifications yet',
  emptyHint: "When something happens, you'll see it here.",
  retry: 'Retry',
  dismiss: 'Dismiss',
  archive: 'Archive',
  unarchive: 'Unarchive',
  markUnread: 'Mark as unread',
  deleteItem: 'Delete',
  filters: 'Show',
  filterInbox: 'Inbox',
  filterUnread: 'Unread',
  filterArchived: 'Archived',
  typeFilter: 'Type',
  allTypes: 'All types',
  states: {
    idle: 'Not connected',
    connecting: 'Connecting…',
    open: 'Live',
    reconnecting: 'Reconnecting…',
    offline: 'Offline',
    closed: 'Disconnected',
    error: 'Connection error',
  },
  pendingHints: {
    idle: 'Notifications will appear once connected.',
    connecting: 'Fetching your notifications.',
    open: 'Fetching your notifications.',
    reconnecting: 'The connection dropped; trying again.',
    offline: 'You are offline. Notifications will arrive when you are back online.',
    closed: 'Not connected to notifications.',
    error: 'Not connected to notifications.',
  },
  actionFailed: {
    mark_read: 'Couldn’t mark the notification as read; it is unread again.',
    mark_all_read: 'Couldn’t mark all as read; your notifications are unread again.',
    load_more: 'Couldn’t load older notifications.',
    archive: 'Couldn’t archive the notification; it is back.',
    unarchive: 'Couldn’t unarchive the notification.',
    mark_unread: 'Couldn’t mark the notification as unread.',
    delete: 'Couldn’t delete the notification; it is back.',
    bulk: 'Couldn’t change your notifications.',
  },
  describeError,
  toastRegion: 'Notifications',
  dismissToast: 'Dismiss notification',
  moreToasts: (n) => `+${n} more`,
};

/** The defaults with `labels` laid over them (the records are merged key by key). */
export function resolveLabels(labels?: Partial<HeraldLabels>): HeraldLabels {
  if (!labels) return defaultLabels;
  return {
    ...defaultLabels,
    ...labels,
    states: { ...defaultLabels.states, ...labels.states },
    pendingHints: { ...defaultLabels.pendingHints, ...labels.pendingHints },
    actionFailed: { ...defaultLabels.actionFailed, ...labels.actionFailed },
  };
}

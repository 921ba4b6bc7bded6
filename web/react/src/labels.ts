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
  /** The preferences view (`<NotificationPreferences />`, the bell's settings button). */
  prefs: PreferencesLabels;
  dismissToast: string;
  moreToasts: (count: number) => string;
}

/** Every word of the preferences view. */
export interface PreferencesLabels {
  /** The view's heading, and the bell panel's settings button name. */
  title: string;
  /** Back from the settings view to the list (in the bell panel). */
  back: string;
  intro: string;
  /** The channels table's caption, its first column's header, and a type's row name. */
  channelsCaption: string;
  typeHeader: string;
  typeName: (type: string) => string;
  channelName: (channel: string) => string;
  /** Under a type: how long the server waits for it to be read before the fallback goes out. */
  after: (ms: number) => string;
  /** A toggle's accessible name, e.g. "Email for comment". */
  toggle: (type: string, channel: string) => string;
  /** Shown (and read) in a cell whose channel the type never uses. */
  notUsed: string;
  noTypes: string;
  quietHours: string;
  quietHoursEnabled: string;
  quietStart: string;
  quietEnd: string;
  timeZone: string;
  digest: string;
  /** Hint under the digest window (bounds in minutes). */
  digestHint: (minMinutes: number, maxMinutes: number) => string;
  save: string;
  saving: string;
  saved: string;
  /** The form could not be saved; the reason follows (a field's own error is shown at it). */
  saveFailed: string;
  /** A field's input was invalid: read before the field's reason. */
  fieldInvalid: string;
  loadFailed: string;
  loading: string;
  retry: string;
}

const CHANNEL_NAMES: Record<string, string> = { webhook: 'Webhook', email: 'Email', push: 'Push' };

/** 250 ms, 30 s, 15 min, 2 h, 1 h 30 min. */
function formatDelay(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

export const defaultPreferencesLabels: PreferencesLabels = {
  title: 'Notification settings',
  back: 'Back to notifications',
  intro: 'Choose how you hear about notifications you have not seen in the app.',
  channelsCaption: 'Channels per notification type',
  typeHeader: 'Type',
  typeName: (t) => (t === '*' ? 'Other types' : t),
  channelName: (c) => CHANNEL_NAMES[c] ?? c,
  after: (ms) => `if unread after ${formatDelay(ms)}`,
  toggle: (t, c) => `${CHANNEL_NAMES[c] ?? c} for ${t === '*' ? 'other types' : t}`,
  notUsed: 'Not used',
  noTypes: 'No notification type is sent outside the app.',
  quietHours: 'Quiet hours',
  quietHoursEnabled: 'Hold notifications during quiet hours',
  quietStart: 'From',
  quietEnd: 'Until',
  timeZone: 'Time zone',
  digest: 'Email digest window (minutes)',
  digestHint: (lo, hi) => `At most one email per window, ${lo} to ${hi} minutes. Empty: the server default.`,
  save: 'Save',
  saving: 'Saving…',
  saved: 'Settings saved.',
  saveFailed: 'Couldn’t save your settings.',
  fieldInvalid: 'Invalid:',
  loadFailed: 'Couldn’t load your settings.',
  loading: 'Loading…',
  retry: 'Retry',
};

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
  prefs: defaultPreferencesLabels,
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
    prefs: { ...defaultLabels.prefs, ...labels.prefs },
  };
}

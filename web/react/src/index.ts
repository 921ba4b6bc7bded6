export { useNotifications, useHeraldClient, HeraldProvider, useNow } from './useNotifications';
export type { UseNotificationsOptions, UseNotificationsResult } from './useNotifications';
export { NotificationBell, NotificationBellView, BellIcon, ConnectionIcon, connectionStateLabel } from './NotificationBell';
export type { NotificationBellProps, NotificationBellViewProps } from './NotificationBell';
export { Toaster, Toast } from './Toaster';
export type { ToasterProps, ToastItem } from './Toaster';
export { formatRelative, badgeText, iconFor, safeLink, describeError } from './format';
export { defaultLabels, resolveLabels } from './labels';
export type { HeraldLabels } from './labels';

export { HeraldClient, deriveApiUrl, matchesFilter } from './client';
export type {
  ConnectionState,
  HeraldClientOptions,
  HeraldEvents,
  HeraldSnapshot,
  ClientError,
  ActionError,
  FailedAction,
  ListFilter,
  BulkTarget,
  NotificationSource,
  WebSocketLike,
  WebSocketCtor,
} from './client';
export { backoffCeiling, backoffDelay, isTerminalClose, DEFAULT_BACKOFF } from './backoff';
export type { BackoffOptions } from './backoff';
export { ToastCoordinator } from './crossTab';
export { base64UrlToBytes, registerPush, unregisterPush } from './push';
export type { PushHttp, PushRegistrationLike, PushSubscriptionInfo, PushSubscriptionLike, RegisterPushOptions } from './push';
export { Emitter } from './emitter';
export * from './types';

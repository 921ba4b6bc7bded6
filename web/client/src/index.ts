export { HeraldClient, deriveApiUrl } from './client';
export type {
  ConnectionState,
  HeraldClientOptions,
  HeraldEvents,
  HeraldSnapshot,
  ClientError,
  ActionError,
  FailedAction,
  NotificationSource,
  WebSocketLike,
  WebSocketCtor,
} from './client';
export { backoffCeiling, backoffDelay, isTerminalClose, DEFAULT_BACKOFF } from './backoff';
export type { BackoffOptions } from './backoff';
export { ToastCoordinator } from './crossTab';
export { Emitter } from './emitter';
export * from './types';

// Wire types, generated from crates/herald-protocol by scripts/gen-ts.sh (do not hand-edit
// ./generated; regenerate instead).
export type { Notification } from './generated/Notification';
export type { Broadcast } from './generated/Broadcast';
export type { ServerMessage } from './generated/ServerMessage';
export type { ClientMessage } from './generated/ClientMessage';
export type { NotificationPage } from './generated/NotificationPage';
export type { MarkReadResult } from './generated/MarkReadResult';
export type { MarkAllReadResult } from './generated/MarkAllReadResult';
export type { UnreadCount } from './generated/UnreadCount';
export type { ErrorCode } from './generated/ErrorCode';
export type { ErrorBody } from './generated/ErrorBody';
export type { PublishRequest } from './generated/PublishRequest';
export type { PublishResponse } from './generated/PublishResponse';
export type { AckResult } from './generated/AckResult';
export type { ConnectionLimits } from './generated/ConnectionLimits';
export type { ResyncReason } from './generated/ResyncReason';
export type { Rid } from './generated/Rid';
export type { InboxAction } from './generated/InboxAction';
export type { InboxFilter } from './generated/InboxFilter';
export type { InboxResult } from './generated/InboxResult';
export type { InboxCounts } from './generated/InboxCounts';
export type { TypeCounts } from './generated/TypeCounts';
export type { BulkRequest } from './generated/BulkRequest';
export type { SeenResult } from './generated/SeenResult';

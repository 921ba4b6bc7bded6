// The seed's NotificationsGateway, as written there, with one deviation (see sendToUser).
import { Logger } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import {
  ConnectedSocket,
  MessageBody,
  OnGatewayConnection,
  OnGatewayDisconnect,
  SubscribeMessage,
  WebSocketGateway,
  WebSocketServer,
} from '@nestjs/websockets';
import { Namespace, Socket } from 'socket.io';
import { config } from '../config';

export interface NotificationPayload {
  id: string;
  type: string;
  title: string;
  message: string;
  link?: string;
  avatar?: string;
  data?: unknown;
  createdAt: string;
  read: boolean;
}

@WebSocketGateway({
  cors: {
    origin: process.env.FRONTEND_URL || 'http://localhost:3000',
    credentials: true,
  },
  namespace: config.namespace,
})
export class NotificationsGateway implements OnGatewayConnection, OnGatewayDisconnect {
  // With a namespace, Nest injects the namespace ("this.server" in the seed).
  @WebSocketServer()
  server: Namespace;

  private readonly logger = new Logger(NotificationsGateway.name);

  // Maps userId → Set of socket IDs (user can have multiple browser tabs)
  private readonly userSockets = new Map<string, Set<string>>();

  constructor(private readonly jwtService: JwtService) {}

  async handleConnection(client: Socket) {
    try {
      const token =
        client.handshake.auth.token ||
        client.handshake.headers.authorization?.replace('Bearer ', '');
      if (!token) {
        throw new Error('No token provided');
      }
      const payload = this.jwtService.verify(token, { secret: config.jwtSecret });
      const userId = String(payload.sub);
      client.data.userId = userId;
      if (!this.userSockets.has(userId)) {
        this.userSockets.set(userId, new Set());
      }
      this.userSockets.get(userId)!.add(client.id);
      client.join(`user:${userId}`);
      if (config.verbose) this.logger.log(`User ${userId} connected (socket: ${client.id})`);
      client.emit('connected', {
        message: 'Connected to notification service',
        userId,
      });
    } catch (error) {
      if (config.verbose) this.logger.warn(`Connection rejected: ${(error as Error).message}`);
      client.emit('error', { message: 'Authentication failed' });
      client.disconnect();
    }
  }

  handleDisconnect(client: Socket) {
    const userId = client.data.userId;
    if (userId) {
      const sockets = this.userSockets.get(userId);
      if (sockets) {
        sockets.delete(client.id);
        if (sockets.size === 0) {
          this.userSockets.delete(userId);
        }
      }
      if (config.verbose) this.logger.log(`User ${userId} disconnected (socket: ${client.id})`);
    }
  }

  // The seed returns early when the user has no socket on *this* instance, which loses the
  // notification for a user connected to the other one. Emitting to the room always is what
  // the seed's Redis-adapter section intends (the same deviation as ../socketio).
  sendToUser(userId: string, notification: NotificationPayload): boolean {
    this.server.to(`user:${userId}`).emit('notification', notification);
    return this.userSockets.has(userId);
  }

  broadcastToAll(notification: NotificationPayload) {
    this.server.emit('global_notification', notification);
  }

  @SubscribeMessage('mark_read')
  async handleMarkRead(
    @ConnectedSocket() client: Socket,
    @MessageBody() data: { notificationId: string },
  ) {
    return { success: true, notificationId: data?.notificationId };
  }

  @SubscribeMessage('get_unread_count')
  async handleGetUnreadCount(@ConnectedSocket() _client: Socket) {
    return { unreadCount: 0 };
  }
}

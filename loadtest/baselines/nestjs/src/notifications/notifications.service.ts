import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { config } from '../config';
import { DbService } from '../db.service';
import { PrismaClient } from '../generated/prisma/client';
import { NotificationPayload, NotificationsGateway } from './notifications.gateway';

// What a caller supplies, as in the seed's `create(userId, data: Omit<…>)`.
export type CreateNotification = Omit<NotificationPayload, 'id' | 'createdAt' | 'read'>;

// The seed's NotificationsService.create: one INSERT, then emit to the user's room.
@Injectable()
export class NotificationsService {
  constructor(
    private readonly db: DbService,
    private readonly gateway: NotificationsGateway,
  ) {}

  async create(userId: string, data: CreateNotification): Promise<NotificationPayload> {
    const prisma = this.db.prisma;
    const payload = prisma ? await this.insertPrisma(prisma, userId, data) : await this.insertPg(userId, data);
    this.gateway.sendToUser(userId, payload);
    return payload;
  }

  // The seed's own call: `this.prisma.notification.create({ data: { userId, ...data } })`.
  private async insertPrisma(
    prisma: PrismaClient,
    userId: string,
    data: CreateNotification,
  ): Promise<NotificationPayload> {
    const n = await prisma.notification.create({
      data: {
        userId,
        type: data.type,
        title: data.title,
        message: data.message,
        link: data.link,
        avatarUrl: data.avatar,
        data: data.data === undefined ? undefined : (data.data as object),
      },
    });
    return stored({ ...n, avatar: n.avatarUrl, createdAt: n.createdAt ?? new Date() });
  }

  // The same row with one raw INSERT through node-postgres.
  private async insertPg(userId: string, data: CreateNotification): Promise<NotificationPayload> {
    const { rows } = await this.db.pool.query(
      `INSERT INTO ${config.table} (user_id, type, title, message, link, avatar_url, data)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       RETURNING id, type, title, message, link, avatar_url, data, created_at`,
      [userId, data.type, data.title, data.message, data.link ?? null, data.avatar ?? null, data.data ?? null],
    );
    const n = rows[0];
    return stored({ ...n, avatar: n.avatar_url, createdAt: n.created_at });
  }

  // The seed's broadcastToAll: not persisted.
  broadcast(data: CreateNotification): NotificationPayload {
    const payload: NotificationPayload = {
      id: randomUUID(),
      type: data.type,
      title: data.title,
      message: data.message,
      data: data.data,
      createdAt: new Date().toISOString(),
      read: false,
    };
    this.gateway.broadcastToAll(payload);
    return payload;
  }
}

interface StoredRow {
  id: string;
  type: string;
  title: string;
  message: string;
  link: string | null;
  avatar: string | null;
  data: unknown;
  createdAt: Date;
}

// What the seed emits and returns for a stored row.
function stored(n: StoredRow): NotificationPayload {
  return {
    id: n.id,
    type: n.type,
    title: n.title,
    message: n.message,
    link: n.link || undefined,
    avatar: n.avatar || undefined,
    data: n.data ?? undefined,
    createdAt: n.createdAt.toISOString(),
    read: false,
  };
}

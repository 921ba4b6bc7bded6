import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  HttpCode,
  Injectable,
  Post,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { config } from '../config';
import { CreateNotification, NotificationsService } from './notifications.service';

// Service API key: `Authorization: Bearer <key>` (the same keys as Herald's in the bench).
@Injectable()
export class ServiceKeyGuard implements CanActivate {
  canActivate(ctx: ExecutionContext): boolean {
    const h: string = ctx.switchToHttp().getRequest().headers.authorization || '';
    if (h.startsWith('Bearer ') && config.serviceKeys.has(h.slice(7))) return true;
    throw new UnauthorizedException({ error: 'unauthorized' });
  }
}

const str = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

// The publish body the harness sends to both baselines (Herald's field names).
interface PublishBody {
  recipient?: unknown;
  type?: unknown;
  title?: unknown;
  body?: unknown;
  link?: unknown;
  avatar_url?: unknown;
  data?: unknown;
}

function content(b: PublishBody): CreateNotification {
  if (!b || !str(b.type, 50) || !str(b.title, 255)) {
    throw new BadRequestException({ error: 'type and title are required' });
  }
  return {
    type: b.type,
    title: b.title,
    message: typeof b.body === 'string' ? b.body : '',
    link: typeof b.link === 'string' ? b.link : undefined,
    avatar: typeof b.avatar_url === 'string' ? b.avatar_url : undefined,
    data: b.data ?? undefined,
  };
}

@Controller()
export class NotificationsController {
  constructor(private readonly notifications: NotificationsService) {}

  @Post('notifications')
  @HttpCode(201)
  @UseGuards(ServiceKeyGuard)
  async create(@Body() body: PublishBody) {
    const c = content(body);
    if (!str(body.recipient, 200)) {
      throw new BadRequestException({ error: 'recipient is required' });
    }
    return this.notifications.create(body.recipient, c);
  }

  @Post('broadcasts')
  @HttpCode(202)
  @UseGuards(ServiceKeyGuard)
  broadcast(@Body() body: PublishBody) {
    return { id: this.notifications.broadcast(content(body)).id };
  }

  @Get(['healthz', 'readyz'])
  health() {
    return { ok: true, node: config.nodeId };
  }
}

import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { ServerOptions } from 'socket.io';
import { config } from './config';

// The NestJS documentation's RedisIoAdapter: every Socket.IO server the app creates shares
// rooms with the other instances through one Redis pub/sub pair.
export class RedisIoAdapter extends IoAdapter {
  private adapterConstructor: ReturnType<typeof createAdapter>;

  constructor(app: INestApplicationContext) {
    super(app);
  }

  async connectToRedis(): Promise<void> {
    const pub = createClient({ url: config.redisUrl });
    const sub = pub.duplicate();
    pub.on('error', (e) => console.log(`[${config.nodeId}] redis error`, e.message));
    sub.on('error', (e) => console.log(`[${config.nodeId}] redis error`, e.message));
    await Promise.all([pub.connect(), sub.connect()]);
    this.adapterConstructor = createAdapter(pub, sub, { key: config.redisKey });
  }

  createIOServer(port: number, options?: ServerOptions): any {
    const server = super.createIOServer(port, { ...options, serveClient: false });
    server.adapter(this.adapterConstructor);
    return server;
  }
}

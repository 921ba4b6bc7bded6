// NestJS baseline for the Herald load test (see README.md): the seed's stack as its authors
// run it. Environment: the SIO_* variables of ../socketio/server.js (src/config.ts).
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import { config } from './config';
import { DbService } from './db.service';
import { RedisIoAdapter } from './redis-io.adapter';

async function bootstrap() {
  const app = await NestFactory.create(AppModule, {
    logger: config.verbose ? ['log', 'warn', 'error'] : ['warn', 'error'],
  });
  await app.get(DbService).migrate();
  const adapter = new RedisIoAdapter(app);
  await adapter.connectToRedis();
  app.useWebSocketAdapter(adapter);
  app.enableShutdownHooks();
  // Longer than the harness's pooled-connection idle time (4 s), as for ../socketio.
  app.getHttpServer().keepAliveTimeout = 65_000;
  await app.listen(config.port, config.host);
  console.log(`[${config.nodeId}] listening on ${config.host}:${config.port} namespace ${config.namespace} table ${config.table} orm ${config.orm}`);
}

bootstrap().catch((e) => {
  console.error(e);
  process.exit(1);
});

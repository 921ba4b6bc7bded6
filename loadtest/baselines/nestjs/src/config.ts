// Environment, shared with ../socketio/server.js so bench.sh and scale.sh start either the
// same way (see README.md). A missing required value exits with status 2 and its name.
export function env(k: string, d?: string): string {
  const v = process.env[k];
  if (v === undefined || v === '') {
    if (d === undefined) {
      console.error(`missing ${k}`);
      process.exit(2);
    }
    return d;
  }
  return v;
}

const listen = env('SIO_LISTEN', '127.0.0.1:3001');
const colon = listen.lastIndexOf(':');

export const config = {
  host: listen.slice(0, colon),
  port: Number(listen.slice(colon + 1)),
  nodeId: env('SIO_NODE_ID', `nest-${process.pid}`),
  databaseUrl: env('SIO_DATABASE_URL'),
  table: env('SIO_TABLE', 'nest_notifications'),
  pgPool: Number(env('SIO_PG_POOL', '10')),
  // How NotificationsService.create writes: `prisma` (the seed's ORM) or `pg` (one raw
  // INSERT through node-postgres).
  orm: env('SIO_ORM', 'pg'),
  redisUrl: env('SIO_REDIS_URL'),
  redisKey: env('SIO_REDIS_KEY', 'socket.io'),
  jwtSecret: env('SIO_JWT_SECRET'),
  serviceKeys: new Set(env('SIO_SERVICE_KEYS').split(',').map((s) => s.trim()).filter(Boolean)),
  namespace: env('SIO_NAMESPACE', '/notifications'),
  verbose: env('SIO_LOG', '') === 'info',
};

if (!/^[a-z_][a-z0-9_]*$/.test(config.table)) {
  console.error('bad SIO_TABLE');
  process.exit(2);
}
// The Prisma model names its table (prisma/schema.prisma, @@map).
const PRISMA_TABLE = 'nestjs_prisma_notifications';
if (config.orm !== 'pg' && config.orm !== 'prisma') {
  console.error(`SIO_ORM must be prisma or pg, not ${config.orm}`);
  process.exit(2);
}
if (config.orm === 'prisma' && config.table !== PRISMA_TABLE) {
  console.error(`SIO_ORM=prisma needs SIO_TABLE=${PRISMA_TABLE} (the model's @@map), not ${config.table}`);
  process.exit(2);
}

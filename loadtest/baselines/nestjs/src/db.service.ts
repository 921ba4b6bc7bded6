import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import { Pool } from 'pg';
import { config } from './config';
import { PrismaClient } from './generated/prisma/client';

// The seed's PrismaService, and a raw pool beside it. With SIO_ORM=prisma the service writes
// through Prisma 7 (TypeScript query compiler over the pg driver adapter: no query-engine
// binary, which binaries.prisma.sh would have to supply); with SIO_ORM=pg through the pool,
// one raw INSERT. The pool also runs the DDL either way.
@Injectable()
export class DbService implements OnModuleDestroy {
  readonly pool = new Pool({ connectionString: config.databaseUrl, max: config.pgPool });
  readonly prisma: PrismaClient | null =
    config.orm === 'prisma'
      ? new PrismaClient({
          adapter: new PrismaPg({ connectionString: config.databaseUrl, max: config.pgPool }),
        })
      : null;

  // The seed's schema (plus `data JSONB`); two instances may start together, so the
  // idempotent DDL is retried on a catalog race.
  async migrate(): Promise<void> {
    const t = config.table;
    for (let i = 0; ; i++) {
      try {
        await this.pool.query(`CREATE TABLE IF NOT EXISTS ${t} (
          id          UUID DEFAULT gen_random_uuid() PRIMARY KEY,
          user_id     TEXT NOT NULL,
          type        VARCHAR(50) NOT NULL,
          title       VARCHAR(255) NOT NULL,
          message     TEXT NOT NULL,
          link        VARCHAR(500),
          avatar_url  VARCHAR(500),
          data        JSONB,
          read        BOOLEAN DEFAULT false,
          created_at  TIMESTAMP DEFAULT NOW(),
          read_at     TIMESTAMP)`);
        await this.pool.query(`CREATE INDEX IF NOT EXISTS ${t}_user_unread
          ON ${t}(user_id, read, created_at DESC) WHERE read = false`);
        return;
      } catch (e) {
        if (i >= 5) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async onModuleDestroy(): Promise<void> {
    await this.prisma?.$disconnect();
    await this.pool.end();
  }
}

import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { Pool } from 'pg';
import { config } from './config';

// Stands in for the seed's PrismaService: Prisma's query engine is a binary fetched from
// binaries.prisma.sh at install time, which this machine cannot reach. node-postgres runs
// the same one-row INSERT, with less overhead than Prisma's engine round trip.
@Injectable()
export class DbService implements OnModuleDestroy {
  readonly pool = new Pool({ connectionString: config.databaseUrl, max: config.pgPool });

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
    await this.pool.end();
  }
}

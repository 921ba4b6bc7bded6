import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { safeLink } from '../src/format';

// The same cases the server's validation is tested against (herald-core `is_safe_link`).
const vectors = JSON.parse(
  // Vitest runs from web/ (web/vitest.config.ts).
  readFileSync(resolve(process.cwd(), '../crates/herald-protocol/link-vectors.json'), 'utf8'),
) as { cases: { link: string; ok: boolean }[] };

describe('safeLink', () => {
  it('has the shared cases', () => {
    expect(vectors.cases.length).toBeGreaterThan(30);
  });
  for (const { link, ok } of vectors.cases) {
    it(`${ok ? 'follows' : 'refuses'} ${JSON.stringify(link)}`, () => {
      expect(safeLink(link)).toBe(ok ? link : null);
    });
  }
});

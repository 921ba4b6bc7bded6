/** "just now", "5m ago", "3h ago", "2d ago", then a short date ("Mar 4", or "Mar 4, 2025" for other years). */
export function formatRelative(date: string | number | Date, now: number | Date = Date.now()): string {
  const t = new Date(date).getTime();
  const n = new Date(now).getTime();
  if (!Number.isFinite(t)) return '';
  const s = Math.round((n - t) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.round(s / 3600);
  if (h < 24) return `${h}h ago`;
  const d = Math.round(s / 86400);
  if (d < 7) return d === 1 ? 'yesterday' : `${d}d ago`;
  const dt = new Date(t);
  const sameYear = dt.getFullYear() === new Date(n).getFullYear();
  return dt.toLocaleDateString('en-US', sameYear ? { month: 'short', day: 'numeric' } : { month: 'short', day: 'numeric', year: 'numeric' });
}

/** Badge text: the count, or "99+" above 99. */
export function badgeText(count: number): string {
  return count > 99 ? '99+' : String(count);
}

const ICONS: Array<[string, string]> = [
  ['comment', '💬'],
  ['mention', '@'],
  ['order', '📦'],
  ['task', '✅'],
  ['payment', '💳'],
  ['system', '⚠️'],
];

/** Icon by notification type, matched by prefix (`comment.created` → 💬). */
export function iconFor(type: string): string {
  const t = type.toLowerCase();
  for (const [prefix, icon] of ICONS) if (t.startsWith(prefix)) return icon;
  return '🔔';
}

/** Only follow site-relative paths and http(s) URLs (the server guarantees it; belt and braces). */
export function safeLink(link: string | null | undefined): string | null {
  if (!link) return null;
  if (link.startsWith('/') && !link.startsWith('//')) return link;
  if (/^https?:\/\//i.test(link)) return link;
  return null;
}

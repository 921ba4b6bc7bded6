/**
 * A short relative time. Without `locale`: "just now", "5m ago", "3h ago", "yesterday", "2d ago",
 * then a short date ("Mar 4", or "Mar 4, 2025" for other years). With `locale`, the same steps in
 * that language through `Intl.RelativeTimeFormat` and `Intl.DateTimeFormat` ("il y a 5 min").
 */
export function formatRelative(date: string | number | Date, now: number | Date = Date.now(), locale?: string): string {
  const t = new Date(date).getTime();
  const n = new Date(now).getTime();
  if (!Number.isFinite(t)) return '';
  const s = Math.round((n - t) / 1000);
  const m = Math.round(s / 60);
  const h = Math.round(s / 3600);
  const d = Math.round(s / 86400);
  const dt = new Date(t);
  const sameYear = dt.getFullYear() === new Date(n).getFullYear();
  const dateOpts: Intl.DateTimeFormatOptions = sameYear ? { month: 'short', day: 'numeric' } : { month: 'short', day: 'numeric', year: 'numeric' };
  if (locale) {
    const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto', style: 'short' });
    if (s < 45) return rtf.format(0, 'second');
    if (m < 60) return rtf.format(-m, 'minute');
    if (h < 24) return rtf.format(-h, 'hour');
    if (d < 7) return rtf.format(-d, 'day');
    return dt.toLocaleDateString(locale, dateOpts);
  }
  if (s < 45) return 'just now';
  if (m < 60) return `${m}m ago`;
  if (h < 24) return `${h}h ago`;
  if (d < 7) return d === 1 ? 'yesterday' : `${d}d ago`;
  return dt.toLocaleDateString('en-US', dateOpts);
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

/**
 * The link rule the server applies at publish (herald-core `is_safe_link`), kept here too so a
 * link is never followed on trust; both sides are tested against the same cases in
 * `crates/herald-protocol/link-vectors.json`. A link is an absolute http(s) URL with a host
 * (written with `://`), or a same-origin path: one leading `/`, and still on the same origin
 * with a single leading `/` once parsed. Backslashes, whitespace and control characters are
 * refused anywhere, and encoded slashes or backslashes in a path's path part.
 */
export function safeLink(link: string | null | undefined): string | null {
  if (!link) return null;
  // eslint-disable-next-line no-control-regex
  if (/[\\\s\u0000-\u001f\u007f-\u009f]/.test(link)) return null;
  if (link.startsWith('/')) {
    if (link.startsWith('//')) return null;
    const path = link.split(/[?#]/, 1)[0];
    if (/%2f|%5c/i.test(path)) return null;
    const base = 'https://origin.invalid';
    try {
      const u = new URL(link, base);
      if (u.origin !== base || !u.pathname.startsWith('/') || u.pathname.startsWith('//')) return null;
    } catch {
      return null;
    }
    return link;
  }
  const m = /^(https?):\/\//i.exec(link);
  if (!m) return null;
  // `http:///evil.example` would parse with the host taken from the path.
  if (link.slice(m[0].length).startsWith('/')) return null;
  try {
    const u = new URL(link);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname) return null;
  } catch {
    return null;
  }
  return link;
}

/** A short, human reason for a connection or loading error (close codes and error codes). */
export function describeError(err: { code: number | string; message: string }): string {
  switch (err.code) {
    case 4001:
    case 'unauthorized':
    case 401:
      return 'The server refused your sign-in (unauthorized).';
    case 4103:
    case 'token_expired':
      return 'Your session has expired.';
    case 4006:
    case 'token_revoked':
      return 'Your session was revoked.';
    case 4003:
      return 'The session changed to another user.';
    case 4005:
    case 'too_many_connections':
      return 'Too many open connections for this user.';
    case 'token_provider':
      return 'Couldn’t get a sign-in token.';
    case 'network':
    case 'socket':
    case 1006:
      return 'Can’t reach the notification server.';
    case 'forbidden':
    case 403:
      return 'Access to notifications was refused.';
    case 'rate_limited':
    case 429:
      return 'Too many requests; try again in a moment.';
    default:
      return typeof err.code === 'number' && err.code < 4000 ? 'Can’t reach the notification server.' : 'Something went wrong loading notifications.';
  }
}

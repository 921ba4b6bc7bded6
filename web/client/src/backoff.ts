/** Exponential backoff with full jitter: a uniformly random delay in [0, min(cap, base * 2^attempt)). */
export interface BackoffOptions {
  /** First ceiling, in ms (default 500). */
  baseMs?: number;
  /** Largest ceiling, in ms (default 30 000). */
  capMs?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { baseMs: 500, capMs: 30_000 };

/** The ceiling for a given attempt (0-based): min(cap, base * 2^attempt). */
export function backoffCeiling(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
  const cap = opts.capMs ?? DEFAULT_BACKOFF.capMs;
  // 2^attempt overflows to Infinity for big attempts; Math.min keeps it at cap.
  return Math.min(cap, base * Math.pow(2, Math.max(0, attempt)));
}

/** Full jitter: random() * ceiling. `random` is injectable for tests. */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, opts));
}

/** Close codes: 4000–4099 terminal; 1003/1009 mean "fix the client" (terminal too); anything else reconnects. */
export function isTerminalClose(code: number): boolean {
  return (code >= 4000 && code <= 4099) || code === 1003 || code === 1009;
}

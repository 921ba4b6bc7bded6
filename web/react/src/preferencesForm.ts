import type { Preferences, PreferencesSchema } from 'herald-notify-client';

/** What the preferences form edits: plain strings as the inputs hold them. */
export interface PreferencesDraft {
  /** `type -> channel -> on` for every cell the schema offers (a type's rule names the channel). */
  toggles: Record<string, Record<string, boolean>>;
  quiet: boolean;
  start: string;
  end: string;
  timeZone: string;
  /** Minutes as typed; empty = not set (the server's default). */
  digestMinutes: string;
}

/** Whether `prefs` lets `type` use `channel`: the type's own setting, else `*`'s, else on. */
export function allows(prefs: Preferences, type: string, channel: string): boolean {
  return prefs.channels[type]?.[channel] ?? prefs.channels['*']?.[channel] ?? true;
}

/** The form's starting state from what is stored and what the server offers. */
export function toDraft(prefs: Preferences, schema: PreferencesSchema, browserZone: string): PreferencesDraft {
  const toggles: Record<string, Record<string, boolean>> = {};
  for (const t of schema.types) {
    toggles[t.type] = {};
    for (const c of t.channels) toggles[t.type]![c] = allows(prefs, t.type, c);
  }
  const q = prefs.quiet_hours;
  return {
    toggles,
    quiet: !!q,
    start: q?.start ?? '22:00',
    end: q?.end ?? '07:00',
    timeZone: q?.time_zone ?? browserZone,
    digestMinutes: prefs.digest_window_secs != null ? String(prefs.digest_window_secs / 60) : '',
  };
}

/**
 * The document to `PUT`: every cell of the form written out for its type (so a type's row never
 * depends on the `*` row), the stored settings of types the form does not show kept as they
 * were. The digest must already be checked (`digestError`).
 */
export function fromDraft(d: PreferencesDraft, stored: Preferences): Preferences {
  const channels: Record<string, Record<string, boolean>> = {};
  for (const [t, m] of Object.entries(stored.channels)) channels[t] = { ...m };
  for (const [t, m] of Object.entries(d.toggles)) channels[t] = { ...(channels[t] ?? {}), ...m };
  const out: Preferences = { channels };
  if (d.quiet) out.quiet_hours = { start: d.start, end: d.end, time_zone: d.timeZone };
  const dm = d.digestMinutes.trim();
  if (dm !== '') out.digest_window_secs = Math.round(Number(dm) * 60);
  return out;
}

/** The browser's IANA time zone, or UTC. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** The zones to offer: the runtime's list when it has one (plus UTC and `current`), sorted. */
export function timeZones(current: string): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  let all: string[] = [];
  try {
    all = intl.supportedValuesOf?.('timeZone') ?? [];
  } catch {
    all = [];
  }
  const set = new Set(all);
  set.add('UTC');
  if (current) set.add(current);
  return Array.from(set).sort();
}

/** The part of the server's message after its `field: ` prefix. */
export function fieldMessage(field: string, message: string): string {
  return message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
}

/** A digest entry the form can send: empty, or a finite number. */
export function digestError(minutes: string): boolean {
  const t = minutes.trim();
  return t !== '' && !Number.isFinite(Number(t));
}

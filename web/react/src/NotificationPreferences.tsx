import { useCallback, useEffect, useId, useMemo, useRef, useState, type FormEvent } from 'react';
import type { ClientError, HeraldClient, Preferences, PreferencesSchema } from 'herald-notify-client';
import { defaultPreferencesLabels, type PreferencesLabels } from './labels';
import { browserTimeZone, digestError, fieldMessage, fromDraft, timeZones, toDraft, type PreferencesDraft } from './preferencesForm';
import { useHeraldClient } from './useNotifications';

export interface NotificationPreferencesProps {
  /** The client (default: the one of `<HeraldProvider>`). */
  client?: HeraldClient;
  /** Words (see `PreferencesLabels`); missing ones fall back to English. */
  labels?: Partial<PreferencesLabels>;
  /** 'auto' follows the system's light/dark preference; 'light' or 'dark' forces one. Default: inherit. */
  theme?: 'auto' | 'light' | 'dark';
  /** Show the view's own heading (default true; the bell's settings view has its own). */
  showTitle?: boolean;
  /** The heading's id, for a surrounding dialog's `aria-labelledby`. */
  titleId?: string;
  /** Called with what the server stored after each successful save. */
  onSaved?: (prefs: Preferences) => void;
  /** The browser's time zone, used when none is stored (default: `Intl`'s). */
  defaultTimeZone?: string;
}

type Load = { kind: 'loading' } | { kind: 'failed'; error: ClientError } | { kind: 'ready'; schema: PreferencesSchema; stored: Preferences };
type Save = { kind: 'idle' } | { kind: 'pending' } | { kind: 'saved' } | { kind: 'failed'; error: ClientError };

/** The form fields a server `field` points at. */
const FIELD_OF: Record<string, keyof FieldIds> = {
  'quiet_hours.start': 'start',
  'quiet_hours.end': 'end',
  'quiet_hours.time_zone': 'timeZone',
  quiet_hours: 'start',
  digest_window_secs: 'digest',
};
interface FieldIds {
  start: string;
  end: string;
  timeZone: string;
  digest: string;
  channels: string;
}

function toError(e: unknown): ClientError {
  if (e && typeof e === 'object' && 'message' in e) return e as ClientError;
  return { code: 'error', message: String(e) };
}

/**
 * The user's fallback preferences: a table of the server's notification types × channels
 * (checkboxes), quiet hours (from, until, time zone), the email digest window, and Save. A field
 * the server refuses shows the server's reason next to it and takes focus.
 */
export function NotificationPreferences(props: NotificationPreferencesProps) {
  const client = useHeraldClient(props.client);
  const L = useMemo(() => ({ ...defaultPreferencesLabels, ...props.labels }), [props.labels]);
  const browserZone = props.defaultTimeZone ?? browserTimeZone();
  const [load, setLoad] = useState<Load>({ kind: 'loading' });
  const [draft, setDraft] = useState<PreferencesDraft | null>(null);
  const [save, setSave] = useState<Save>({ kind: 'idle' });
  const [attempt, setAttempt] = useState(0);
  const base = useId();
  const ids: FieldIds & { title: string; status: string; digestHint: string } = {
    title: props.titleId ?? `${base}-title`,
    start: `${base}-start`,
    end: `${base}-end`,
    timeZone: `${base}-tz`,
    digest: `${base}-digest`,
    digestHint: `${base}-digest-hint`,
    channels: `${base}-channels`,
    status: `${base}-status`,
  };
  const formRef = useRef<HTMLFormElement>(null);
  const onSavedRef = useRef(props.onSaved);
  onSavedRef.current = props.onSaved;

  useEffect(() => {
    let live = true;
    setLoad({ kind: 'loading' });
    Promise.all([client.getPreferencesSchema(), client.getPreferences()]).then(
      ([schema, stored]) => {
        if (!live) return;
        setLoad({ kind: 'ready', schema, stored });
        setDraft(toDraft(stored, schema, browserZone));
      },
      (e) => live && setLoad({ kind: 'failed', error: toError(e) }),
    );
    return () => {
      live = false;
    };
    // browserZone only seeds a form that has no stored zone; a change later does not reload.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, attempt]);

  const zones = useMemo(() => timeZones(draft?.timeZone ?? browserZone), [draft?.timeZone, browserZone]);

  // The field the last failed save points at (null: the error is about the whole form).
  const failedField =
    save.kind === 'failed' && save.error.field ? (FIELD_OF[save.error.field] ?? (save.error.field.startsWith('channels') ? 'channels' : null)) : null;

  // After a refused save: focus the refused field, so keyboard and screen-reader users land on it.
  useEffect(() => {
    if (save.kind !== 'failed' || !failedField) return;
    document.getElementById(ids[failedField])?.focus();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [save]);

  const update = useCallback((f: (d: PreferencesDraft) => PreferencesDraft) => {
    setDraft((d) => (d ? f(d) : d));
    setSave((s) => (s.kind === 'pending' ? s : { kind: 'idle' }));
  }, []);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (load.kind !== 'ready' || !draft || save.kind === 'pending') return;
    if (digestError(draft.digestMinutes)) {
      setSave({
        kind: 'failed',
        error: { code: 'validation_failed', field: 'digest_window_secs', message: L.digestHint(load.schema.digest_window_secs.min / 60, load.schema.digest_window_secs.max / 60) },
      });
      return;
    }
    const body = fromDraft(draft, load.stored);
    setSave({ kind: 'pending' });
    client.setPreferences(body).then(
      (stored) => {
        setLoad({ kind: 'ready', schema: load.schema, stored });
        setSave({ kind: 'saved' });
        onSavedRef.current?.(stored);
      },
      (err) => setSave({ kind: 'failed', error: toError(err) }),
    );
  };

  const fieldError = (f: keyof FieldIds) =>
    failedField === f && save.kind === 'failed' ? (
      <p className="hn-prefs__field-error" id={`${ids[f]}-error`} data-testid={`herald-prefs-error-${f}`}>
        <span className="hn-sr">{L.fieldInvalid} </span>
        {fieldMessage(save.error.field ?? '', save.error.message)}
      </p>
    ) : null;
  const invalidProps = (f: keyof FieldIds, describedBy?: string) => {
    const bad = failedField === f;
    const by = [bad ? `${ids[f]}-error` : null, describedBy].filter(Boolean).join(' ');
    return { 'aria-invalid': bad || undefined, 'aria-describedby': by || undefined };
  };

  const title = props.showTitle === false ? null : (
    <h2 className="hn-prefs__title" id={ids.title}>
      {L.title}
    </h2>
  );

  return (
    <section
      className="hn-prefs"
      data-hn-theme={props.theme}
      aria-labelledby={props.showTitle === false && !props.titleId ? undefined : ids.title}
      aria-label={props.showTitle === false && !props.titleId ? L.title : undefined}
      data-testid="herald-prefs"
    >
      {title}
      {load.kind === 'loading' && (
        <p className="hn-prefs__status" role="status" data-testid="herald-prefs-loading">
          {L.loading}
        </p>
      )}
      {load.kind === 'failed' && (
        <div className="hn-alert is-error" role="alert" data-testid="herald-prefs-load-error">
          <span className="hn-alert__text">
            {L.loadFailed} <span className="hn-alert__reason">({load.error.message})</span>
          </span>
          <button type="button" className="hn-button" onClick={() => setAttempt((a) => a + 1)}>
            {L.retry}
          </button>
        </div>
      )}
      {load.kind === 'ready' && draft && (
        <form ref={formRef} className="hn-prefs__form" onSubmit={submit} noValidate data-testid="herald-prefs-form">
          <p className="hn-prefs__intro">{L.intro}</p>
          {load.schema.types.length === 0 ? (
            <p className="hn-prefs__intro" data-testid="herald-prefs-no-types">
              {L.noTypes}
            </p>
          ) : (
            <div className="hn-prefs__table-wrap">
              <table className="hn-prefs__table" id={ids.channels} tabIndex={-1} {...invalidProps('channels')}>
                <caption className="hn-prefs__caption">{L.channelsCaption}</caption>
                <thead>
                  <tr>
                    <th scope="col">{L.typeHeader}</th>
                    {load.schema.channels.map((c) => (
                      <th scope="col" key={c}>
                        {L.channelName(c)}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {load.schema.types.map((t) => (
                    <tr key={t.type} data-testid="herald-prefs-row" data-type={t.type}>
                      <th scope="row">
                        {L.typeName(t.type)}{' '}
                        <span className="hn-prefs__after">{L.after(t.after_ms)}</span>
                      </th>
                      {load.schema.channels.map((c) => {
                        const on = draft.toggles[t.type]?.[c];
                        return (
                          <td key={c}>
                            {on === undefined ? (
                              <span className="hn-prefs__na">
                                <span aria-hidden="true">—</span>
                                <span className="hn-sr">{L.notUsed}</span>
                              </span>
                            ) : (
                              <input
                                type="checkbox"
                                className="hn-prefs__toggle"
                                checked={on}
                                aria-label={L.toggle(t.type, c)}
                                data-testid={`herald-prefs-toggle-${t.type}-${c}`}
                                onChange={(e) => {
                                  const v = e.target.checked;
                                  update((d) => ({ ...d, toggles: { ...d.toggles, [t.type]: { ...d.toggles[t.type], [c]: v } } }));
                                }}
                              />
                            )}
                          </td>
                        );
                      })}
                    </tr>
                  ))}
                </tbody>
              </table>
              {fieldError('channels')}
            </div>
          )}

          <fieldset className="hn-prefs__group">
            <legend>{L.quietHours}</legend>
            <label className="hn-prefs__check">
              <input
                type="checkbox"
                checked={draft.quiet}
                data-testid="herald-prefs-quiet"
                onChange={(e) => {
                  const v = e.target.checked;
                  update((d) => ({ ...d, quiet: v }));
                }}
              />
              {L.quietHoursEnabled}
            </label>
            <div className="hn-prefs__row">
              <div className="hn-prefs__field">
                <label htmlFor={ids.start}>{L.quietStart}</label>
                <input
                  id={ids.start}
                  type="time"
                  value={draft.start}
                  disabled={!draft.quiet}
                  data-testid="herald-prefs-start"
                  {...invalidProps('start')}
                  onChange={(e) => {
                    const v = e.target.value;
                    update((d) => ({ ...d, start: v }));
                  }}
                />
                {fieldError('start')}
              </div>
              <div className="hn-prefs__field">
                <label htmlFor={ids.end}>{L.quietEnd}</label>
                <input
                  id={ids.end}
                  type="time"
                  value={draft.end}
                  disabled={!draft.quiet}
                  data-testid="herald-prefs-end"
                  {...invalidProps('end')}
                  onChange={(e) => {
                    const v = e.target.value;
                    update((d) => ({ ...d, end: v }));
                  }}
                />
                {fieldError('end')}
              </div>
              <div className="hn-prefs__field">
                <label htmlFor={ids.timeZone}>{L.timeZone}</label>
                <select
                  id={ids.timeZone}
                  value={draft.timeZone}
                  disabled={!draft.quiet}
                  data-testid="herald-prefs-tz"
                  {...invalidProps('timeZone')}
                  onChange={(e) => {
                    const v = e.target.value;
                    update((d) => ({ ...d, timeZone: v }));
                  }}
                >
                  {zones.map((z) => (
                    <option key={z} value={z}>
                      {z}
                    </option>
                  ))}
                </select>
                {fieldError('timeZone')}
              </div>
            </div>
          </fieldset>

          <div className="hn-prefs__group hn-prefs__field">
            <label htmlFor={ids.digest}>{L.digest}</label>
            <input
              id={ids.digest}
              type="number"
              inputMode="numeric"
              min={load.schema.digest_window_secs.min / 60}
              max={load.schema.digest_window_secs.max / 60}
              step="any"
              value={draft.digestMinutes}
              data-testid="herald-prefs-digest"
              {...invalidProps('digest', ids.digestHint)}
              onChange={(e) => {
                const v = e.target.value;
                update((d) => ({ ...d, digestMinutes: v }));
              }}
            />
            <p className="hn-prefs__hint" id={ids.digestHint}>
              {L.digestHint(load.schema.digest_window_secs.min / 60, load.schema.digest_window_secs.max / 60)}
            </p>
            {fieldError('digest')}
          </div>

          <div className="hn-prefs__actions">
            <button
              type="submit"
              className="hn-button hn-button--primary"
              aria-disabled={save.kind === 'pending' || undefined}
              data-testid="herald-prefs-save"
            >
              {save.kind === 'pending' ? L.saving : L.save}
            </button>
            {/* Outcome: polite for success, an alert for failure (the field's own reason is at the field). */}
            <span className="hn-prefs__status" role="status" id={ids.status} data-testid="herald-prefs-status">
              {save.kind === 'saved' ? L.saved : ''}
            </span>
          </div>
          {save.kind === 'failed' && (
            <div className="hn-alert is-error" role="alert" data-testid="herald-prefs-save-error">
              <span className="hn-alert__text">
                {L.saveFailed}
                {!failedField && <span className="hn-alert__reason"> ({save.error.message})</span>}
              </span>
            </div>
          )}
        </form>
      )}
    </section>
  );
}

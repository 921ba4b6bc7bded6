import { afterEach, describe, expect, it, vi } from 'vitest';
import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import type { ClientError, Preferences, PreferencesSchema } from 'herald-notify-client';
import { noSocketClient } from './fixtures';
import { NotificationBellView, NotificationPreferences } from '../src';
import { fromDraft, toDraft } from '../src/preferencesForm';

afterEach(cleanup);

const schema: PreferencesSchema = {
  channels: ['webhook', 'email'],
  types: [
    { type: 'comment', channels: ['email'], after_ms: 60_000 },
    { type: 'dm', channels: ['webhook', 'email'], after_ms: 30_000 },
    { type: '*', channels: ['webhook'], after_ms: 3_600_000 },
  ],
  digest_window_secs: { min: 60, max: 86_400 },
};

function setup(stored: Preferences, put?: (p: Preferences) => Promise<Preferences>) {
  const client = noSocketClient();
  vi.spyOn(client, 'getPreferencesSchema').mockResolvedValue(schema);
  vi.spyOn(client, 'getPreferences').mockResolvedValue(stored);
  const set = vi.spyOn(client, 'setPreferences').mockImplementation(put ?? (async (p) => p));
  return { client, set };
}

describe('preferences form logic', () => {
  it('a cell shows the type, else *, else on; saving writes every shown cell and keeps the rest', () => {
    const stored: Preferences = { channels: { '*': { email: false }, legacy: { push: false } } };
    const d = toDraft(stored, schema, 'Europe/Paris');
    expect(d.toggles).toEqual({ comment: { email: false }, dm: { webhook: true, email: false }, '*': { webhook: true } });
    expect(d.timeZone).toBe('Europe/Paris');
    expect(d.quiet).toBe(false);
    d.toggles.dm!.email = true;
    expect(fromDraft({ ...d, digestMinutes: '15' }, stored)).toEqual({
      channels: { '*': { email: false, webhook: true }, legacy: { push: false }, comment: { email: false }, dm: { webhook: true, email: true } },
      digest_window_secs: 900,
    });
  });
});

describe('<NotificationPreferences />', () => {
  it('renders a labelled checkbox per type × channel the type uses, and saves a change', async () => {
    const { client, set } = setup({ channels: {} });
    const onSaved = vi.fn();
    render(<NotificationPreferences client={client} onSaved={onSaved} defaultTimeZone="Asia/Tokyo" />);
    const box = await screen.findByRole('checkbox', { name: 'Email for dm' });
    expect((box as HTMLInputElement).checked).toBe(true);
    expect(screen.getAllByRole('checkbox', { name: /for / })).toHaveLength(4);
    expect((screen.getByRole('checkbox', { name: 'Webhook for other types' }) as HTMLInputElement).checked).toBe(true);
    // comment has no webhook: a "not used" cell, no checkbox.
    expect(screen.queryByRole('checkbox', { name: 'Webhook for comment' })).toBeNull();
    expect((screen.getByLabelText('Time zone') as HTMLSelectElement).value).toBe('Asia/Tokyo');
    // Each type says when the server falls back (its configured delay).
    expect(screen.getByRole('rowheader', { name: /^dm/ }).textContent).toBe('dm if unread after 30 s');
    expect(screen.getByRole('rowheader', { name: /^Other types/ }).textContent).toBe('Other types if unread after 1 h');
    fireEvent.click(box);
    fireEvent.click(screen.getByRole('checkbox', { name: 'Hold notifications during quiet hours' }));
    fireEvent.change(screen.getByLabelText('From'), { target: { value: '21:30' } });
    fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    expect(screen.getByRole('button', { name: 'Saving…' }).getAttribute('aria-disabled')).toBe('true');
    await screen.findByText('Settings saved.');
    expect(set).toHaveBeenCalledWith({
      channels: { comment: { email: true }, dm: { webhook: true, email: false }, '*': { webhook: true } },
      quiet_hours: { start: '21:30', end: '07:00', time_zone: 'Asia/Tokyo' },
    });
    expect(onSaved).toHaveBeenCalledTimes(1);
  });

  it("shows a refused field's reason at the field, marks it invalid and focuses it", async () => {
    const refusal: ClientError = {
      code: 'validation_failed',
      field: 'quiet_hours.end',
      message: 'quiet_hours.end: must differ from start',
    };
    const { client } = setup(
      { channels: {}, quiet_hours: { start: '22:00', end: '22:00', time_zone: 'UTC' } },
      async () => Promise.reject(refusal),
    );
    render(<NotificationPreferences client={client} />);
    fireEvent.click(await screen.findByRole('button', { name: 'Save' }));
    const err = await screen.findByTestId('herald-prefs-error-end');
    expect(err.textContent).toContain('must differ from start');
    expect(err.textContent).not.toContain('quiet_hours.end:');
    const end = screen.getByLabelText('Until');
    expect(end.getAttribute('aria-invalid')).toBe('true');
    expect(end.getAttribute('aria-describedby')).toContain(err.id);
    await waitFor(() => expect(document.activeElement).toBe(end));
    expect(screen.getByRole('alert').textContent).toContain('Couldn’t save your settings.');
    // Editing clears the error.
    fireEvent.change(end, { target: { value: '07:00' } });
    expect(screen.queryByTestId('herald-prefs-error-end')).toBeNull();
  });

  it('a failed load shows why and Retry loads again', async () => {
    const client = noSocketClient();
    const get = vi.spyOn(client, 'getPreferencesSchema').mockRejectedValueOnce({ code: 'network', message: 'down' }).mockResolvedValue(schema);
    vi.spyOn(client, 'getPreferences').mockResolvedValue({ channels: {} });
    render(<NotificationPreferences client={client} />);
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('Couldn’t load your settings. (down)');
    fireEvent.click(within(alert).getByRole('button', { name: 'Retry' }));
    await screen.findByRole('checkbox', { name: 'Email for dm' });
    expect(get).toHaveBeenCalledTimes(2);
  });

  it('labels are localisable', async () => {
    const { client } = setup({ channels: {} });
    render(<NotificationPreferences client={client} labels={{ title: 'Einstellungen', toggle: (t, c) => `${c} für ${t}` }} />);
    expect(await screen.findByRole('checkbox', { name: 'email für dm' })).toBeTruthy();
    expect(screen.getByRole('region', { name: 'Einstellungen' })).toBeTruthy();
  });
});

describe('the bell panel settings view', () => {
  it('the settings button swaps the list for the view; Back returns focus to it', async () => {
    render(
      <NotificationBellView
        notifications={[]}
        unreadCount={0}
        state="open"
        onMarkRead={() => undefined}
        onMarkAllRead={() => undefined}
        defaultOpen
        renderSettings={({ titleId }) => <p data-testid="settings-body" data-title={titleId} />}
      />,
    );
    const gear = screen.getByRole('button', { name: 'Notification settings' });
    act(() => gear.click());
    const body = screen.getByTestId('settings-body');
    const dialog = screen.getByRole('dialog', { name: 'Notification settings' });
    expect(body.getAttribute('data-title')).toBe(dialog.getAttribute('aria-labelledby'));
    expect(document.activeElement).toBe(screen.getByTestId('herald-panel-title'));
    expect(screen.queryByTestId('herald-empty')).toBeNull();
    act(() => screen.getByRole('button', { name: 'Back to notifications' }).click());
    expect(screen.getByTestId('herald-empty')).toBeTruthy();
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Notification settings' }));
  });
});

import { describe, expect, it } from 'vitest';
import { HeraldClient, type ClientError, type Preferences } from '../src';
import { FakeSocket, Reply, fakeFetch } from './fakes';

function make(routes: Parameters<typeof fakeFetch>[0]) {
  const f = fakeFetch(routes);
  const client = new HeraldClient({
    url: 'ws://gw.test/v1/ws',
    getToken: async () => 'tok',
    WebSocket: FakeSocket,
    fetch: f.fn,
    crossTab: false,
    seen: false,
    env: { addEventListener: (() => undefined) as any, removeEventListener: (() => undefined) as any, isOnline: () => true },
  });
  return { client, fetch: f };
}

const prefs: Preferences = {
  channels: { dm: { email: false } },
  quiet_hours: { start: '22:00', end: '07:00', time_zone: 'Europe/Berlin' },
  digest_window_secs: 3600,
};

describe('preferences', () => {
  it('getPreferences and getPreferencesSchema GET with the token', async () => {
    const schema = { channels: ['webhook'], types: [{ type: 'dm', channels: ['webhook'], after_ms: 30000 }], digest_window_secs: { min: 60, max: 86400 } };
    const { client, fetch } = make({
      '/v1/me/preferences/schema': () => schema,
      '/v1/me/preferences': () => prefs,
    });
    expect(await client.getPreferences()).toEqual(prefs);
    let call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.url).toBe('http://gw.test/v1/me/preferences');
    expect(call.init.method).toBe('GET');
    expect((call.init.headers as Record<string, string>).Authorization).toBe('Bearer tok');
    expect(await client.getPreferencesSchema()).toEqual(schema);
    call = fetch.calls[fetch.calls.length - 1]!;
    expect(call.url).toBe('http://gw.test/v1/me/preferences/schema');
  });

  it('setPreferences PUTs the JSON and resolves with what is stored', async () => {
    const { client, fetch } = make({ '/v1/me/preferences': (_u, init) => JSON.parse(String(init.body)) });
    expect(await client.setPreferences(prefs)).toEqual(prefs);
    const call = fetch.calls[0]!;
    expect(call.init.method).toBe('PUT');
    expect((call.init.headers as Record<string, string>)['Content-Type']).toBe('application/json');
    expect(JSON.parse(String(call.init.body))).toEqual(prefs);
  });

  it("a refused one rejects with the server's code, field and message", async () => {
    const { client } = make({
      '/v1/me/preferences': () =>
        new Reply(400, {
          code: 'validation_failed',
          message: 'quiet_hours.time_zone: "Mars/Base" is not an IANA time zone name',
          field: 'quiet_hours.time_zone',
        }),
    });
    const err = (await client.setPreferences(prefs).catch((e) => e)) as ClientError;
    expect(err).toEqual({
      code: 'validation_failed',
      message: 'quiet_hours.time_zone: "Mars/Base" is not an IANA time zone name',
      field: 'quiet_hours.time_zone',
    });
  });

  it('an error without a field has none; a network failure is code network', async () => {
    const { client } = make({ '/v1/me/preferences': () => new Reply(500, { code: 'internal', message: 'boom' }) });
    const err = (await client.getPreferences().catch((e) => e)) as ClientError;
    expect(err).toEqual({ code: 'internal', message: 'boom' });
    const down = new HeraldClient({
      url: 'ws://gw.test/v1/ws',
      getToken: async () => 'tok',
      WebSocket: FakeSocket,
      fetch: (async () => {
        throw new TypeError('Failed to fetch');
      }) as unknown as typeof fetch,
      crossTab: false,
    });
    const e2 = (await down.getPreferences().catch((e) => e)) as ClientError;
    expect(e2.code).toBe('network');
  });
});

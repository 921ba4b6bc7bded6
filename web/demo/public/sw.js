// Herald demo service worker: shows Web Push fallbacks (docs/channels.md, Web Push) as system
// notifications and opens the notification's link when one is clicked.
// The push payload is JSON {id, type, title, body, url, seq}.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: event.data ? event.data.text() : '' };
  }
  const title = data.title || 'New notification';
  event.waitUntil(
    self.registration.showNotification(title, {
      body: data.body || '',
      // One system notification per Herald notification: a repeated push replaces it.
      tag: data.id || undefined,
      data: { url: data.url || null, id: data.id || null, seq: data.seq ?? null },
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  const target = url ? new URL(url, self.registration.scope).href : self.registration.scope;
  event.waitUntil(
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((tabs) => {
      const open = tabs.find((t) => t.url === target);
      return open ? open.focus() : self.clients.openWindow(target);
    }),
  );
});

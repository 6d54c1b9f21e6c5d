/// <reference lib="webworker" />
/**
 * The service worker: keeps the app shell (HTML, scripts, styles) so a reload without a connection
 * still opens the app; the data itself is in IndexedDB. API calls are never cached here.
 */
declare const self: ServiceWorkerGlobalScope;
export {};

// Replaced at build time with the built files and a version that changes with them (vite.config.ts).
const FILES = "__PRECACHE_FILES__" as unknown as string[];
const VERSION = "__PRECACHE_VERSION__" as unknown as string;
const CACHE = `stockzen-shell-${hash(VERSION)}`;

function hash(text: string): string {
  let value = 0;
  for (let i = 0; i < text.length; i++) value = (Math.imul(31, value) + text.charCodeAt(i)) | 0;
  return (value >>> 0).toString(36);
}

self.addEventListener("install", (event: ExtendableEvent) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(FILES.map((file) => new URL(file, self.registration.scope).href)))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event: ExtendableEvent) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("stockzen-shell-") && name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event: FetchEvent) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.href.startsWith(self.registration.scope)) return;
  if (request.mode === "navigate") {
    // Network first, so an online load gets the newest release; the cached shell when offline.
    event.respondWith(
      fetch(request).catch(async () => (await caches.match(new URL("./", self.registration.scope).href)) ?? Response.error()),
    );
    return;
  }
  event.respondWith(caches.match(request).then((cached) => cached ?? fetch(request)));
});

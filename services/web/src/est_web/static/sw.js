// Service worker: keeps the app shell available offline. Reports made offline wait in the page's
// outbox (localStorage) and are sent by the page when the network returns; API calls are never cached.
const CACHE = "est-shell-v4";
const SHELL = [
  "/app/", "/app/app.js", "/app/core.js", "/app/styles.css", "/app/manifest.webmanifest",
  "/app/vendor/htm-preact-standalone-3.1.1.mjs",
  "/app/pages/signin.js",
  "/app/pages/reporter.js",
  "/app/pages/dashboard.js",
  "/app/pages/admin.js",
  "/app/pages/steering.js",
  "/app/pages/map.js",
  "/app/pages/mine.js",
  "/app/pages/police.js",
  "/app/pages/social.js",
];
self.addEventListener("install", (e) => e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL))));
self.addEventListener("activate", (e) => e.waitUntil(
  caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))));
self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || !url.pathname.startsWith("/app/")) return;
  // network first so updates show at once; the cache when offline
  e.respondWith(fetch(e.request).then((r) => {
    const copy = r.clone();
    caches.open(CACHE).then((c) => c.put(e.request, copy));
    return r;
  }).catch(() => caches.match(e.request)));
});

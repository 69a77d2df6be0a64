// EST Lägesbild web front end: the app shell (header, menu, language, sign-in state) and its pages.
// Preact + htm, no build step, ES modules. Swedish first; English selectable.
import { html, render, useState, useEffect, t, api, useLive, LANG, setLang, getSession, endSession } from "./core.js";
import { Reporter, flushOutbox } from "./pages/reporter.js";
import { SignIn } from "./pages/signin.js";
import { Dashboard } from "./pages/dashboard.js";
import { Admin } from "./pages/admin.js";
import { Steering } from "./pages/steering.js";
import { Police } from "./pages/police.js";
import { Social } from "./pages/social.js";

// ---------------------------------------------------------------------------------------------
// The menu's pages in order: who sees each (a person with any of its roles; no roles: every signed-in
// person who is not only a reporter) and its component, given { me, checklist, online, tick }. A new page
// is one entry here and one module under pages/; `also` names other addresses it answers ("#forfeitures/<id>",
// the link in social services' e-mail), and "#page/<rest>" is the page too.
const STAFF = ["key_function", "beredningsgrupp", "styrgrupp", "police", "social_services", "admin"];
export const PAGES = [
  { hash: "#report", text: "report", roles: ["reporter"], live: false,
    component: ({ me, checklist, online, tick }) => html`<${Reporter} me=${me} checklist=${checklist} online=${online} tick=${tick}/>` },
  { hash: "#dashboard", text: "dashboard", roles: STAFF, live: true,
    component: ({ me, checklist, tick }) => html`<${Dashboard} me=${me} checklist=${checklist} liveTick=${tick}/>` },
  { hash: "#steering", text: { sv: "Styrning", en: "Steering" }, roles: ["beredningsgrupp", "styrgrupp", "key_function", "admin"], live: false,
    component: ({ me }) => html`<${Steering} me=${me}/>` },
  { hash: "#police", text: { sv: "Förverkanden", en: "Forfeitures" }, roles: ["police"], live: false,
    component: ({ me, online }) => html`<${Police} me=${me} online=${online}/>` },
  { hash: "#social", also: ["#forfeitures"], text: { sv: "Underrättelser", en: "Notifications" }, roles: ["social_services"], live: true,
    component: ({ tick }) => html`<${Social} tick=${tick}/>` },
  { hash: "#admin", text: { sv: "Administration", en: "Administration" }, roles: ["admin"], live: false,
    component: ({ me }) => html`<${Admin} me=${me}/>` },
];
const pagesOf = (me) => PAGES.filter((p) => (me.roles || []).some((r) => p.roles.includes(r)));
const pageText = (p) => (typeof p.text === "string" ? t(p.text) : p.text[LANG] || p.text.sv);

function App() {
  const [me, setMe] = useState(null); const [checklist, setChecklist] = useState(null);
  const [route, setRoute] = useState(location.hash); const [online, setOnline] = useState(navigator.onLine);
  const [, force] = useState(0);
  useEffect(() => { const h = () => setRoute(location.hash); addEventListener("hashchange", h); return () => removeEventListener("hashchange", h); }, []);
  useEffect(() => {
    const on = () => { setOnline(true); flushOutbox(() => force((x) => x + 1)); }; const off = () => setOnline(false);
    addEventListener("online", on); addEventListener("offline", off);
    const timer = setInterval(() => navigator.onLine && flushOutbox(() => force((x) => x + 1)), 15000);
    return () => { removeEventListener("online", on); removeEventListener("offline", off); clearInterval(timer); };
  }, []);
  // the gateway's session says who is signed in; offline, the last known person is shown from the device
  const [asked, setAsked] = useState(false);
  useEffect(() => { getSession().then((s) => setMe(s.me)).catch((e) => {
    if (e.status === 401) localStorage.removeItem("est.me");
    else { const m = localStorage.getItem("est.me"); if (m) setMe(JSON.parse(m)); }
  }).finally(() => setAsked(true)); }, []);
  useEffect(() => { if (me) api("intake", "/v1/checklists/current").then((c) => { setChecklist(c); localStorage.setItem("est.checklist", JSON.stringify(c)); })
    .catch(() => { const c = localStorage.getItem("est.checklist"); if (c) setChecklist(JSON.parse(c)); }); }, [me]);
  useEffect(() => { if (me) { localStorage.setItem("est.me", JSON.stringify(me)); flushOutbox(() => force((x) => x + 1)); } }, [me]);
  const mine = me ? pagesOf(me) : [];
  // the page the address names if the person may see it, else their first
  const page = mine.find((p) => [p.hash, ...(p.also || [])].some((h) => route === h || route.startsWith(h + "/"))) || mine[0];
  const [tick, live] = useLive(!!page && page.live);
  const switchLang = () => { setLang(LANG === "sv" ? "en" : "sv"); force((x) => x + 1); };
  const signOut = () => { localStorage.removeItem("est.me"); endSession().catch(() => {}).finally(() => setMe(null)); };
  document.documentElement.lang = LANG;
  // the page shell outside the app (title, skip link) speaks the reader's language too
  document.title = t("app");
  const skip = document.querySelector("a.skip"); if (skip) skip.textContent = t("skip");
  const header = html`<header class="top"><h1>${t("app")}</h1><nav aria-label=${t("menu")}>
      ${mine.map((p) => html`<a href=${p.hash} aria-current=${p === page ? "page" : undefined}>${pageText(p)}</a>`)}
      ${page && page.live && html`<span class="live badge ${live ? "ok" : "warn"}" aria-live="polite">${live ? t("live") : t("liveOff")}</span>`}
      <button onClick=${switchLang} lang=${LANG === "sv" ? "en" : "sv"}>${t("lang")}</button>
      ${me && html`<button onClick=${signOut}>${t("signout")}</button>`}</nav></header>`;
  if (!me && !asked) return html`${header}<p class="loading">…</p>`;
  if (!me) return html`${header}<${SignIn} onIn=${(m) => { setMe(m); const first = pagesOf(m)[0]; if (first) location.hash = first.hash; }}/>`;
  if (!checklist) return html`${header}<p class="loading">…</p>`;
  if (!page) return html`${header}<main id="main"><p class="hint">${t("noPicture")}</p></main>`;
  return html`${header}${page.component({ me, checklist, online, tick })}`;
}

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
const root = document.getElementById("root");
root.textContent = "";
render(html`<${App}/>`, root);

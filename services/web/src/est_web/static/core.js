// Shared by every page: texts, the API through the gateway, periods and dates, small components.
import { html, render, useState, useEffect, useCallback, useRef } from "./vendor/htm-preact-standalone-3.1.1.mjs";

export { html, render, useState, useEffect, useCallback, useRef };

// ---------------------------------------------------------------------------------------------
// Texts
export const TEXT = {
  sv: {
    app: "EST Lägesbild", skip: "Hoppa till innehållet", menu: "Meny", signin: "Logga in", token: "Din åtkomstnyckel (token)", signout: "Logga ut",
    report: "Rapportera", dashboard: "Lägesbild", mine: "Mina rapporter", lang: "English",
    area: "Område", period: "Period", nothing: "Inget att rapportera den här perioden",
    places: "Var?", note: "Kort anteckning", noPii: "Skriv inte namn eller personnummer.",
    submit: "Skicka rapport", saved: "Rapporten är sparad och skickas så fort nätet finns.",
    sent: "Rapporten är mottagen.", queued: "Väntar på nätet", accepted: "Mottagen", rejected: "Avvisad",
    sending: "Skickar…", offline: "Du är offline – rapporter sparas på enheten.", online: "Online",
    yes: "Ja", no: "Nej", levels: ["inget", "enstaka", "återkommande", "omfattande"],
    overall: "Övrig kommentar", empty: "Fyll i minst en punkt eller kryssa i ”Inget att rapportera”.",
    published: "Publicerad lägesbild", noPicture: "Ingen publicerad lägesbild ännu.",
    completeness: "Inrapportering", reports: "rapporter", oneReport: "rapport", expected: "förväntade", late: "sena",
    fromReporters: (r, e) => `från ${r} av ${e} förväntade ${e === 1 ? "rapportör" : "rapportörer"}`,
    noReport: "ingen rapport", publish: "Publicera", comment: "Nyckelfunktionens kommentar (analys)",
    publishedOk: "Lägesbilden är publicerad.", version: "version", status: "Status", open: "öppen",
    pub: "publicerad", firstAnalysis: "Första analys", alerts: "Larm", noAlerts: "Inga aktiva larm.",
    trend: "Utveckling", persistent: "Kvarstående problem", noPersistent: "Inga kvarstående problem.",
    measures: "Åtgärder", noMeasures: "Inga beslutade åtgärder.", strategic: "Strategisk analys",
    downloadReport: "Ladda ner rapporten", downloadPdf: "Ladda ner som PDF", noAnalysis: "Ingen strategisk analys är sammanställd ännu.", prev: "Föregående", next: "Nästa", live: "Live", liveOff: "Ej live",
    item: "Punkt", value: "Värde", choose: "Välj område i tabellen", missing: "Saknas",
    welcome: "Logga in med den åtkomstnyckel du fått av kommunens samordnare.", badToken: "Nyckeln gäller inte.",
    legendNone: "ingen rapport", legendFlag: "flaggad: ökande, högt läge eller nytt problem", by: "av", reporterFeedback: "Återkoppling: senaste publicerade lägesbild",
    months: ["jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"],
    weekShort: "v.", flags: { high: "Högt läge", rising: "Ökande", new: "Nytt problem" },
    trends: { up: "ökar", down: "minskar", flat: "oförändrat" },
    measureStatus: { planned: "planerad", active: "pågår", completed: "genomförd", cancelled: "avbruten" },
    since: "sedan", ongoing: "pågår", endedAt: "upphörde efter", flaggedOf: (k, n) => `flaggad ${k} av ${n} perioder`,
    moreProblems: (n) => `… och ${n} till i rapporten.`, moreAlerts: (n) => `… och ${n} äldre larm.`,
    from: "från", chartLegend: "Punkter i diagrammet",
    refused: "Rapporten skickades inte. Ändra det som är markerat och skicka igen – dina svar finns kvar.",
    refusedField: "Ändra här", fixIt: "Rätta i formuläret", overallNote: "Övrig kommentar", noteAt: "Anteckningen vid",
    badAnswer: "Svaret kunde inte tas emot. Kontrollera det och försök igen.",
  },
  en: {
    app: "EST Situational picture", skip: "Skip to content", menu: "Menu", signin: "Sign in", token: "Your access token", signout: "Sign out",
    report: "Report", dashboard: "Picture", mine: "My reports", lang: "Svenska",
    area: "Area", period: "Period", nothing: "Nothing to report this period",
    places: "Where?", note: "Short note", noPii: "Do not write names or personal identity numbers.",
    submit: "Send report", saved: "The report is saved and will be sent as soon as there is a network.",
    sent: "The report was received.", queued: "Waiting for network", accepted: "Received", rejected: "Refused",
    sending: "Sending…", offline: "You are offline – reports are kept on this device.", online: "Online",
    yes: "Yes", no: "No", levels: ["none", "occasional", "recurring", "extensive"],
    overall: "Other comment", empty: "Answer at least one item or tick “Nothing to report”.",
    published: "Published picture", noPicture: "No published picture yet.",
    completeness: "Reporting", reports: "reports", oneReport: "report", expected: "expected", late: "late",
    fromReporters: (r, e) => `from ${r} of ${e} expected ${e === 1 ? "reporter" : "reporters"}`,
    noReport: "no report", publish: "Publish", comment: "Key function's comment (analysis)",
    publishedOk: "The picture is published.", version: "version", status: "Status", open: "open",
    pub: "published", firstAnalysis: "First analysis", alerts: "Alerts", noAlerts: "No active alerts.",
    trend: "Trend", persistent: "Persistent problems", noPersistent: "No persistent problems.",
    measures: "Measures", noMeasures: "No measures decided.", strategic: "Strategic analysis",
    downloadReport: "Download the report", downloadPdf: "Download as PDF", noAnalysis: "No strategic analysis has been compiled yet.", prev: "Previous", next: "Next", live: "Live", liveOff: "Not live",
    item: "Item", value: "Value", choose: "Choose an area in the table", missing: "Missing",
    welcome: "Sign in with the access token your municipality's coordinator gave you.", badToken: "The token is not valid.",
    legendNone: "no report", legendFlag: "flagged: rising, high level or new problem", by: "of", reporterFeedback: "Feedback: latest published picture",
    months: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    weekShort: "wk", flags: { high: "High level", rising: "Rising", new: "New problem" },
    trends: { up: "increasing", down: "decreasing", flat: "unchanged" },
    measureStatus: { planned: "planned", active: "in progress", completed: "carried out", cancelled: "cancelled" },
    since: "since", ongoing: "ongoing", endedAt: "ended after", flaggedOf: (k, n) => `flagged in ${k} of ${n} periods`,
    moreProblems: (n) => `… and ${n} more in the report.`, moreAlerts: (n) => `… and ${n} older alerts.`,
    from: "from", chartLegend: "Items in the chart",
    refused: "The report was not sent. Change what is marked and send it again – your answers are kept.",
    refusedField: "Change this", fixIt: "Correct it in the form", overallNote: "Other comment", noteAt: "The note at",
    badAnswer: "The answer could not be accepted. Check it and try again.",
  },
};
export let LANG = localStorage.getItem("est.lang") || "sv";
/** Switch the reader's language (kept on the device). */
export function setLang(lang) { LANG = lang; localStorage.setItem("est.lang", LANG); document.documentElement.lang = LANG; }
/** A page's own texts: ``texts({ sv: {...}, en: {...} })`` gives its ``t``, English falling back to Swedish. */
export const texts = (table) => (k) => table[LANG][k] ?? table.sv[k] ?? k;
export const t = (k) => TEXT[LANG][k] ?? k;
export const label = (item) => (LANG === "sv" ? item.label_sv : item.label_en) || item.code || item.item;
// a checklist item's name by its code (the checklist knows every code a picture or an alert can name)
export const itemName = (checklist, code) => label((checklist.items || []).find((i) => i.code === code) || { code });
// a text of a checklist in the reader's language (help_sv/help_en, label_sv/label_en), Swedish when it has no other
export const own = (thing, key) => (thing && (thing[`${key}_${LANG}`] || thing[`${key}_sv`])) || "";
// what a level item's step n is called: the item's own scale, else the checklist's (0 inget … 3 omfattande)
export function stepName(item, n) {
  const step = item.scale && (item.scale[n] || item.scale[String(n)]);
  return step ? step[LANG] || step.sv : t("levels")[n];
}
// the checklist's items under its group headings, in the groups' order (items of no group first, unheaded)
export function groupedItems(checklist) {
  const groups = checklist.groups || [], items = checklist.items || [];
  const known = new Set(groups.map((g) => g.code));
  return [{ group: null, items: items.filter((i) => !i.group || !known.has(i.group)) },
    ...groups.map((g) => ({ group: g, items: items.filter((i) => i.group === g.code) }))].filter((s) => s.items.length);
}
// the reader's language of a {sv, en} text, or of a "svenska / English" text as the services write them
// (split at the first " / ": English labels may hold one, "Hang-out / den", Swedish ones do not)
export function pick(text) {
  if (text && typeof text === "object") return text[LANG] || text.sv || "";
  const s = String(text || ""); const at = s.indexOf(" / ");
  return at < 0 ? s : LANG === "sv" ? s.slice(0, at) : s.slice(at + 3);
}
export const coded = (group, code) => (code ? (TEXT[LANG][group] || {})[code] || code : "");
export const flagText = (flag) => coded("flags", flag);
export const trendText = (trend) => coded("trends", trend);
export const kindText = (kind) => flagText(String(kind || "").replace(/^flag:/, ""));

// ---------------------------------------------------------------------------------------------
// API through the same-origin gateway. The browser holds no credential: the gateway keeps it in the
// sign-in session behind an HttpOnly cookie and adds it when it forwards. A state-changing request
// sends the session's CSRF token (from GET /session) as X-CSRF-Token.
let CSRF = "";
/** The one place requests get what proves the caller: the session's CSRF token (the cookie goes by itself). */
export const authHeaders = () => (CSRF ? { "X-CSRF-Token": CSRF } : {});
async function call(url, { method = "GET", body, headers = {} } = {}) {
  const res = await fetch(url, {
    method, credentials: "same-origin", headers: { ...authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) { const e = new Error((data && (data.detail || data.title)) || res.statusText); e.status = res.status; e.data = data; throw e; }
  return data;
}
export const api = (service, path, options) => call(`/api/${service}${path}`, options);
// The sign-in session: who is signed in ({me, csrf_token, kind}; 401 when nobody), signing in and out
function opened(s) { CSRF = (s && s.csrf_token) || ""; return s; }
export const getSession = async () => opened(await call("/session"));
export const signInWithToken = async (token) => opened(await call("/session", { method: "POST", body: { token } }));
export const signInMethods = () => call("/session/methods");
export const demoPeople = () => call("/session/demo");
export const signInAsDemo = async (person_id) => opened(await call("/session/demo", { method: "POST", body: { person_id } }));
// signing out; with the organisation's provider the browser then goes to end the provider's session too
export async function endSession() {
  try { const out = await call("/session/sign-out", { method: "POST" }); if (out && out.end_session_url) location.assign(out.end_session_url); }
  finally { CSRF = ""; }
}

// A file from the API, saved as a download under the name the app gives it
export async function saveFile(service, path, filename) {
  const res = await fetch(`/api/${service}${path}`, { credentials: "same-origin", headers: authHeaders() });
  if (!res.ok) {
    let detail = res.statusText;
    try { const d = await res.json(); detail = d.detail || d.title || detail; } catch { /* not JSON */ }
    throw new Error(detail);
  }
  const url = URL.createObjectURL(new Blob([await res.blob()], { type: "application/octet-stream" }));
  const a = document.createElement("a"); a.href = url; a.download = filename;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---------------------------------------------------------------------------------------------
// Periods (ISO weeks; the server is the authority, this only steps between them)
export function isoWeek(d) {
  const x = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const day = x.getUTCDay() || 7; x.setUTCDate(x.getUTCDate() + 4 - day);
  const y0 = new Date(Date.UTC(x.getUTCFullYear(), 0, 1));
  const w = Math.ceil(((x - y0) / 86400000 + 1) / 7);
  return `${x.getUTCFullYear()}-W${String(w).padStart(2, "0")}`;
}
export function mondayOf(id) {
  const [y, w] = id.split(/-[WB]/).map(Number);
  const jan4 = new Date(Date.UTC(y, 0, 4)); const day = jan4.getUTCDay() || 7;
  const mon = new Date(jan4); mon.setUTCDate(jan4.getUTCDate() - day + 1 + (w - 1) * 7); return mon;
}
// Dates in the reader's language: "30 nov – 6 dec", "23–29 nov", "29 dec 2025 – 4 jan 2026"
export function dayMonth(d, withYear) { return `${d.getUTCDate()} ${t("months")[d.getUTCMonth()]}${withYear ? " " + d.getUTCFullYear() : ""}`; }
export function dateRange(a, b) {
  const sameYear = a.getUTCFullYear() === b.getUTCFullYear();
  if (sameYear && a.getUTCMonth() === b.getUTCMonth()) return `${a.getUTCDate()}–${dayMonth(b)}`;
  return `${dayMonth(a, !sameYear)} – ${dayMonth(b, !sameYear)}`;
}
export const dateText = (iso) => { const d = new Date(`${String(iso).slice(0, 10)}T00:00:00Z`); return isNaN(d) ? String(iso) : dayMonth(d, true); };
// A period's code with the days or months it covers: "2026-W49 (30 nov – 6 dec)", "2026-T3 (sep–dec 2026)"
export function periodText(id) {
  if (!id) return "";
  const week = /^\d{4}-([WB])\d{2}$/.exec(id);
  if (week) { const m = mondayOf(id); const end = new Date(m); end.setUTCDate(m.getUTCDate() + (week[1] === "B" ? 13 : 6));
    return `${id} (${dateRange(m, end)})`; }
  const part = /^(\d{4})-([TQ])([1-4])$/.exec(id);
  if (part) { const len = part[2] === "T" ? 4 : 3; const first = (Number(part[3]) - 1) * len; const mo = t("months");
    return `${id} (${mo[first]}–${mo[first + len - 1]} ${part[1]})`; }
  return id;
}
// the short form for chart axes: the week's Monday
export const periodTick = (id) => (/^\d{4}-[WB]\d{2}$/.test(id) ? dayMonth(mondayOf(id)) : id);
export function shiftWeek(id, n) { const m = mondayOf(id); m.setUTCDate(m.getUTCDate() + 7 * n + 3); return isoWeek(new Date(m.getUTCFullYear(), m.getUTCMonth(), m.getUTCDate())); }

// ---------------------------------------------------------------------------------------------
// Small shared components
export function Msg({ kind, children }) { return html`<div class=${"msg " + kind} role=${kind === "bad" ? "alert" : "status"}>${children}</div>`; }

export function PictureSummary({ picture }) {
  const items = Object.values(picture.items || {}).filter((i) => i.value > 0).sort((a, b) => (b.flag ? 1 : 0) - (a.flag ? 1 : 0));
  return html`<p><strong>${picture.area_name || ""} · ${periodText(picture.period)}</strong> · ${t("version")} ${picture.version}</p>
    <p>${pick(picture.first_analysis)}</p>
    ${(picture.comments || []).map((c) => html`<blockquote class="comment">${c.text || c.comment}</blockquote>`)}
    <table><thead><tr><th>${t("item")}</th><th>${t("value")}</th><th>${t("trend")}</th></tr></thead>
    <tbody>${items.map((i) => html`<tr><td>${label(i)}</td><td>${i.value}</td><td>${i.flag ? html`<span class="badge bad">${flagText(i.flag)}</span>` : trendText(i.trend)}</td></tr>`)}</tbody></table>`;
}

// ---------------------------------------------------------------------------------------------
// Live updates from the notifier's stream (fetch, so it reconnects and reads the stream the same way as the API)
export function useLive(enabled) {
  const [tick, setTick] = useState(0); const [live, setLive] = useState(false);
  useEffect(() => {
    if (!enabled) return;
    let stop = false; const ctrl = new AbortController();
    (async () => {
      while (!stop) {
        try {
          const res = await fetch("/api/notifier/v1/stream", { credentials: "same-origin", headers: { ...authHeaders(), Accept: "text/event-stream" }, signal: ctrl.signal });
          if (!res.ok || !res.body) throw new Error(String(res.status));
          setLive(true); const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = "";
          for (;;) { const { value, done } = await reader.read(); if (done) break; buf += dec.decode(value, { stream: true });
            let i; while ((i = buf.indexOf("\n\n")) >= 0) { const block = buf.slice(0, i); buf = buf.slice(i + 2); if (/^data:/m.test(block)) setTick((x) => x + 1); } }
        } catch { /* reconnect below */ }
        setLive(false); if (!stop) await new Promise((r) => setTimeout(r, 5000));
      }
    })();
    return () => { stop = true; ctrl.abort(); };
  }, [enabled]);
  return [tick, live];
}


// EST Lägesbild web front end: reporter's checklist form (offline-capable) and the dashboard.
// Preact + htm, no build step. Swedish first; English selectable.
import { html, render, useState, useEffect, useCallback, useRef } from "./vendor/htm-preact-standalone-3.1.1.mjs";

// ---------------------------------------------------------------------------------------------
// Texts
const TEXT = {
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
let LANG = localStorage.getItem("est.lang") || "sv";
const t = (k) => TEXT[LANG][k] ?? k;
const label = (item) => (LANG === "sv" ? item.label_sv : item.label_en) || item.code || item.item;
// a checklist item's name by its code (the checklist knows every code a picture or an alert can name)
const itemName = (checklist, code) => label((checklist.items || []).find((i) => i.code === code) || { code });
// a text of a checklist in the reader's language (help_sv/help_en, label_sv/label_en), Swedish when it has no other
const own = (thing, key) => (thing && (thing[`${key}_${LANG}`] || thing[`${key}_sv`])) || "";
// what a level item's step n is called: the item's own scale, else the checklist's (0 inget … 3 omfattande)
function stepName(item, n) {
  const step = item.scale && (item.scale[n] || item.scale[String(n)]);
  return step ? step[LANG] || step.sv : t("levels")[n];
}
// the checklist's items under its group headings, in the groups' order (items of no group first, unheaded)
function groupedItems(checklist) {
  const groups = checklist.groups || [], items = checklist.items || [];
  const known = new Set(groups.map((g) => g.code));
  return [{ group: null, items: items.filter((i) => !i.group || !known.has(i.group)) },
    ...groups.map((g) => ({ group: g, items: items.filter((i) => i.group === g.code) }))].filter((s) => s.items.length);
}
// the reader's language of a {sv, en} text, or of a "svenska / English" text as the services write them
// (split at the first " / ": English labels may hold one, "Hang-out / den", Swedish ones do not)
function pick(text) {
  if (text && typeof text === "object") return text[LANG] || text.sv || "";
  const s = String(text || ""); const at = s.indexOf(" / ");
  return at < 0 ? s : LANG === "sv" ? s.slice(0, at) : s.slice(at + 3);
}
const coded = (group, code) => (code ? (TEXT[LANG][group] || {})[code] || code : "");
const flagText = (flag) => coded("flags", flag);
const trendText = (trend) => coded("trends", trend);
const kindText = (kind) => flagText(String(kind || "").replace(/^flag:/, ""));

// ---------------------------------------------------------------------------------------------
// API through the same-origin gateway
const token = () => localStorage.getItem("est.token") || "";
async function api(service, path, { method = "GET", body } = {}) {
  const res = await fetch(`/api/${service}${path}`, {
    method, headers: { Authorization: `Bearer ${token()}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) { const e = new Error((data && (data.detail || data.title)) || res.statusText); e.status = res.status; e.data = data; throw e; }
  return data;
}

// A file from the API (it needs the token, so it cannot be a plain link), saved as a download
async function saveFile(service, path, filename) {
  const res = await fetch(`/api/${service}${path}`, { headers: { Authorization: `Bearer ${token()}` } });
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
function isoWeek(d) {
  const x = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const day = x.getUTCDay() || 7; x.setUTCDate(x.getUTCDate() + 4 - day);
  const y0 = new Date(Date.UTC(x.getUTCFullYear(), 0, 1));
  const w = Math.ceil(((x - y0) / 86400000 + 1) / 7);
  return `${x.getUTCFullYear()}-W${String(w).padStart(2, "0")}`;
}
function mondayOf(id) {
  const [y, w] = id.split(/-[WB]/).map(Number);
  const jan4 = new Date(Date.UTC(y, 0, 4)); const day = jan4.getUTCDay() || 7;
  const mon = new Date(jan4); mon.setUTCDate(jan4.getUTCDate() - day + 1 + (w - 1) * 7); return mon;
}
// Dates in the reader's language: "30 nov – 6 dec", "23–29 nov", "29 dec 2025 – 4 jan 2026"
function dayMonth(d, withYear) { return `${d.getUTCDate()} ${t("months")[d.getUTCMonth()]}${withYear ? " " + d.getUTCFullYear() : ""}`; }
function dateRange(a, b) {
  const sameYear = a.getUTCFullYear() === b.getUTCFullYear();
  if (sameYear && a.getUTCMonth() === b.getUTCMonth()) return `${a.getUTCDate()}–${dayMonth(b)}`;
  return `${dayMonth(a, !sameYear)} – ${dayMonth(b, !sameYear)}`;
}
const dateText = (iso) => { const d = new Date(`${String(iso).slice(0, 10)}T00:00:00Z`); return isNaN(d) ? String(iso) : dayMonth(d, true); };
// A period's code with the days or months it covers: "2026-W49 (30 nov – 6 dec)", "2026-T3 (sep–dec 2026)"
function periodText(id) {
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
const periodTick = (id) => (/^\d{4}-[WB]\d{2}$/.test(id) ? dayMonth(mondayOf(id)) : id);
function shiftWeek(id, n) { const m = mondayOf(id); m.setUTCDate(m.getUTCDate() + 7 * n + 3); return isoWeek(new Date(m.getUTCFullYear(), m.getUTCMonth(), m.getUTCDate())); }

// ---------------------------------------------------------------------------------------------
// Outbox: reports are kept on the device until the intake answered; ids are made with the draft
const OUTBOX = "est.outbox";
const readOutbox = () => JSON.parse(localStorage.getItem(OUTBOX) || "[]");
const writeOutbox = (items) => localStorage.setItem(OUTBOX, JSON.stringify(items));
let flushing = null;
async function flushOutbox(onChange) {
  if (flushing) return flushing;
  flushing = (async () => {
    for (const entry of readOutbox().filter((e) => e.state === "queued")) {
      let state = "queued", answer = null, error = null;
      try {
        answer = await api("intake", "/v1/reports", { method: "POST", body: entry.report });
        state = "accepted";
      } catch (e) {
        if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) { state = "rejected"; error = e.data || { detail: e.message }; }
        // network errors, 5xx and 503 with Retry-After stay queued: sent again later with the same report_id
      }
      const items = readOutbox();
      const it = items.find((x) => x.report.report_id === entry.report.report_id);
      if (it) { it.state = state; it.answer = answer; it.error = error; it.tried = new Date().toISOString(); }
      writeOutbox(items);
      onChange && onChange();
    }
  })().finally(() => { flushing = null; });
  return flushing;
}

// ---------------------------------------------------------------------------------------------
// Small components
const levelClass = (cell) => (cell == null ? "lvl-none" : `lvl-${Math.max(0, Math.min(3, cell))}`);
function cellLevel(it) {
  if (!it) return null;
  if (it.answer === "level") return Math.round(it.value);
  if (it.flag === "high") return 3;
  if (it.flag === "rising" || it.flag === "new") return 2;
  return it.value > 0 ? 1 : 0;
}
function Msg({ kind, children }) { return html`<div class=${"msg " + kind} role=${kind === "bad" ? "alert" : "status"}>${children}</div>`; }

function TrendChart({ series, items, checklist }) {
  const W = 520, H = 180, P = 28;
  if (!series || !series.length) return null;
  const codes = items.length ? items : [];
  const max = Math.max(1, ...series.flatMap((p) => codes.map((c) => (p.items[c] ? p.items[c].value : 0))));
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, series.length - 1);
  const y = (v) => H - P - (v * (H - 2 * P)) / max;
  const colours = ["#1d4e89", "#b91c1c", "#15803d", "#7c3aed", "#c2410c"];
  const names = codes.map((c) => itemName(checklist, c));
  return html`<figure class="chart"><svg viewBox="0 0 ${W} ${H}" role="img" aria-label=${`${t("trend")}: ${names.join(", ")}`} style="width:100%;max-width:${W}px">
    <line x1=${P} y1=${H - P} x2=${W - P} y2=${H - P} stroke="#94a3b8"/>
    ${series.map((p, i) => (i % Math.ceil(series.length / 6) === 0) && html`<text x=${x(i)} y=${H - 8} font-size="10" text-anchor="middle" fill="#4a5461">${periodTick(p.period)}</text>`)}
    ${codes.map((c, k) => html`<polyline fill="none" stroke=${colours[k % colours.length]} stroke-width="2.5"
        points=${series.map((p, i) => `${x(i)},${y(p.items[c] ? p.items[c].value : 0)}`).join(" ")}/>`)}
  </svg>
  <figcaption><span class="sr">${t("chartLegend")}</span><ul class="chart-legend">${names.map((n, k) => html`<li><i class=${"swatch c" + (k % colours.length)}></i>${n}</li>`)}</ul></figcaption></figure>`;
}

// ---------------------------------------------------------------------------------------------
// Sign in
function SignIn({ onIn }) {
  const [value, setValue] = useState(""); const [err, setErr] = useState("");
  const submit = async (ev) => {
    ev.preventDefault(); localStorage.setItem("est.token", value.trim());
    try { onIn(await api("intake", "/v1/me")); } catch (e) { setErr(e.status === 401 ? t("badToken") : pick(e.message)); localStorage.removeItem("est.token"); }
  };
  return html`<main id="main"><div class="card" style="max-width:28rem;margin:2rem auto">
    <h2>${t("signin")}</h2><p class="hint">${t("welcome")}</p>
    <form onSubmit=${submit}>
      <label for="token">${t("token")}</label>
      <input id="token" type="password" autocomplete="current-password" value=${value} onInput=${(e) => setValue(e.target.value)} required/>
      <p><button class="primary" type="submit">${t("signin")}</button></p>
      ${err && html`<${Msg} kind="bad">${err}<//>`}
    </form></div></main>`;
}

// ---------------------------------------------------------------------------------------------
// Reporter form
function newDraft(areaId) { return { report_id: crypto.randomUUID(), area_id: areaId, answers: {}, nothing_to_report: false, note: "" }; }
function loadDraft(areaId) { const d = localStorage.getItem(`est.draft.${areaId}`); return d ? JSON.parse(d) : newDraft(areaId); }
function saveDraft(d) { localStorage.setItem(`est.draft.${d.area_id}`, JSON.stringify(d)); }

// The intake's refusal (its problem body) as plain messages per form field, in the reader's language:
// "answers.<item>.note", "answers.<item>" (the answer itself), "note" (the overall comment), "form" (the rest)
const sentence = (text) => { const s = String(text || "").trim(); return s ? s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? "" : ".") : ""; };
function refusalByField(problem) {
  const out = {};
  for (const e of (problem && problem.errors) || []) {
    const field = String(e.field || "").replace(/^body\./, "");
    const key = field === "note" || /^answers\.[^.]+\.note$/.test(field) ? field : (/^answers\.[^.]+/.exec(field) || ["form"])[0];
    const text = sentence((LANG === "sv" ? e.message_sv : e.message_en) || t("badAnswer"));
    if (!(out[key] || "").includes(text)) out[key] = out[key] ? `${out[key]} ${text}` : text;
  }
  if (!Object.keys(out).length) out.form = sentence(pick(problem && (problem.detail || problem.title))) || t("badAnswer");
  return out;
}
function refusedName(checklist, key) {
  if (key === "note") return t("overallNote");
  const m = /^answers\.([^.]+)(\.note)?$/.exec(key);
  if (!m) return "";
  return m[2] ? `${t("noteAt")} ”${itemName(checklist, m[1])}”` : itemName(checklist, m[1]);
}

function ItemField({ item, answer, places, onChange, disabled, refused }) {
  const v = answer ? answer.value : undefined;
  const set = (value) => onChange(value === undefined || value === 0 || value === false ? undefined : { ...(answer || {}), value });
  const id = `i-${item.code}`;
  const valueError = refused[`answers.${item.code}`], noteError = refused[`answers.${item.code}.note`];
  const help = own(item, "help");
  // the help text and the refusal (if any) describe the answer
  const described = [help && id + "-help", valueError && id + "-error"].filter(Boolean).join(" ") || undefined;
  let control;
  if (item.answer === "count") {
    control = html`<div class="count">
      <button type="button" aria-label="−1" disabled=${disabled} onClick=${() => set(Math.max(0, (v || 0) - 1))}>−</button>
      <input id=${id} type="number" min="0" inputmode="numeric" aria-label=${label(item)} value=${v || 0} disabled=${disabled}
        aria-invalid=${valueError ? "true" : undefined} aria-describedby=${described}
        onInput=${(e) => set(Math.max(0, parseInt(e.target.value || "0", 10) || 0))}/>
      <button type="button" aria-label="+1" disabled=${disabled} onClick=${() => set((v || 0) + 1)}>+</button></div>`;
  } else if (item.answer === "level") {
    control = html`<div class="levels" role="radiogroup" aria-label=${label(item)} aria-invalid=${valueError ? "true" : undefined}
      aria-describedby=${described}>${[0, 1, 2, 3].map((n) => html`
      <label><input type="radio" name=${id} value=${n} checked=${(v || 0) === n} disabled=${disabled} onChange=${() => set(n)}/>${n} ${stepName(item, n)}</label>`)}</div>`;
  } else {
    control = html`<div class="levels" role="radiogroup" aria-label=${label(item)} aria-invalid=${valueError ? "true" : undefined}
      aria-describedby=${described}>
      <label><input type="radio" name=${id} checked=${v === true} disabled=${disabled} onChange=${() => set(true)}/>${t("yes")}</label>
      <label><input type="radio" name=${id} checked=${v !== true} disabled=${disabled} onChange=${() => set(false)}/>${t("no")}</label></div>`;
  }
  return html`<fieldset class=${"item" + (answer ? " answered" : "") + (valueError || noteError ? " refused" : "")}>
    <legend>${label(item)}</legend>${help && html`<p class="hint help" id=${id + "-help"}>${help}</p>`}${control}
    ${valueError && html`<p class="field-error" id=${id + "-error"}>${t("refusedField")}: ${valueError}</p>`}
    ${answer && item.places !== false && places.length > 0 && html`<div class="chips" role="group" aria-label=${t("places")}>
      <span class="hint">${t("places")}</span>${places.map((p) => html`<label><input type="checkbox" checked=${(answer.places || []).includes(p)}
        onChange=${(e) => onChange({ ...answer, places: e.target.checked ? [...(answer.places || []), p] : (answer.places || []).filter((x) => x !== p) })}/>${p}</label>`)}</div>`}
    ${answer && html`<div class="note"><label for=${id + "-note"} class="hint">${t("note")} – <span class="warn">${t("noPii")}</span></label>
      <input id=${id + "-note"} type="text" maxlength="500" value=${answer.note || ""} onInput=${(e) => onChange({ ...answer, note: e.target.value })}
        aria-invalid=${noteError ? "true" : undefined} aria-describedby=${noteError ? id + "-note-error" : undefined}/>
      ${noteError && html`<p class="field-error" id=${id + "-note-error"}>${t("refusedField")}: ${noteError}</p>`}</div>`}
  </fieldset>`;
}

// The checklist an area's reports follow: its municipality's (``area.checklist``). The caller's own
// (/v1/checklists/current) is the first area's; another municipality's is fetched, and kept for offline use.
function useAreaChecklist(area, current) {
  const ref = area && area.checklist;
  const kept = () => { const c = ref && localStorage.getItem(`est.checklist.${ref}`); return c ? JSON.parse(c) : null; };
  const [other, setOther] = useState(kept);
  useEffect(() => {
    if (!ref || ref === current.ref) return;
    setOther(kept());
    api("intake", `/v1/checklists/${ref}`)
      .then((c) => { localStorage.setItem(`est.checklist.${ref}`, JSON.stringify(c)); setOther(c); }).catch(() => {});
  }, [ref, current.ref]);
  if (!ref || ref === current.ref) return current;
  return other && other.ref === ref ? other : null;
}

function Reporter({ me, checklist: current, online, tick }) {
  const areas = me.areas || [];
  const [areaId, setAreaId] = useState(areas[0] ? areas[0].id : "");
  const [draft, setDraft] = useState(() => (areaId ? loadDraft(areaId) : null));
  const [msg, setMsg] = useState(null);
  // the intake's problem body for the report in the form; its messages follow the language switch
  const [refusal, setRefusal] = useState(null);
  const [sending, setSending] = useState(false);
  const [, setVersion] = useState(0);
  const outbox = readOutbox();  // read on every render: the sender updates it from anywhere
  const [picture, setPicture] = useState(null);
  const area = areas.find((a) => a.id === areaId);
  useEffect(() => { if (areaId) setDraft(loadDraft(areaId)); }, [areaId]);
  useEffect(() => { if (draft) saveDraft(draft); }, [draft]);
  useEffect(() => { if (refusal) { const bad = document.querySelector("#report-form [aria-invalid=true]"); if (bad && bad.focus) bad.focus(); } }, [refusal]);
  const refresh = useCallback(() => setVersion((v) => v + 1), []);
  useEffect(() => {
    if (!area) return;
    api("aggregator", `/v1/areas/${area.id}/pictures/${shiftWeek(area.current_period, -1)}`)
      .then((p) => setPicture(p.status === "published" ? p : null)).catch(() => setPicture(null));
  }, [areaId]);
  const checklist = useAreaChecklist(area, current);
  if (!area) return html`<main id="main"><div class="card">${t("noPicture")}</div></main>`;
  if (!checklist) return html`<main id="main"><p class="loading">…</p></main>`;
  const refused = refusal ? refusalByField(refusal) : {};
  const unmark = (...keys) => { if (refusal && keys.some((k) => refused[k])) {
    const errors = (refusal.errors || []).filter((e) => !keys.includes(String(e.field || "").replace(/^body\./, "")));
    setRefusal(errors.length ? { ...refusal, errors } : null); } };
  const setAnswer = (code, a) => {
    if ((a && a.note) !== ((draft.answers[code] || {}).note)) unmark(`answers.${code}.note`);
    if ((a && a.value) !== ((draft.answers[code] || {}).value)) unmark(`answers.${code}`, `answers.${code}.value`);
    setDraft((d) => { const answers = { ...d.answers }; if (a) answers[code] = a; else delete answers[code]; return { ...d, answers }; });
  };
  // a refused report goes back into the form, answers and all, with the refused fields marked; the
  // intake stored nothing, so the same report id is sent again once it is corrected
  const backToForm = (entry) => {
    writeOutbox(readOutbox().filter((x) => x.report.report_id !== entry.report.report_id));
    const r = entry.report;
    const d = { report_id: r.report_id, area_id: r.area_id, answers: r.answers || {}, nothing_to_report: !!r.nothing_to_report, note: r.note || "" };
    saveDraft(d); setDraft(d); if (d.area_id !== areaId) setAreaId(d.area_id);
    setRefusal(typeof entry.error === "object" && entry.error ? entry.error : { detail: entry.error || "" });
    setMsg(null); refresh();
  };
  const submit = async (ev) => {
    ev.preventDefault();
    if (sending) return;
    if (!draft.nothing_to_report && Object.keys(draft.answers).length === 0) { setMsg({ kind: "bad", text: t("empty") }); return; }
    // answers only to the items of the area's checklist (a draft may hold some of an earlier version's)
    const answers = Object.fromEntries(Object.entries(draft.nothing_to_report ? {} : draft.answers)
      .filter(([code]) => checklist.items.some((i) => i.code === code)));
    const report = { ...draft, period: area.current_period, checklist: checklist.ref, answers };
    writeOutbox([...readOutbox(), { report, state: "queued", created: new Date().toISOString(), area_name: area.name }]);
    setRefusal(null); setSending(true); setMsg({ kind: "info", text: t("sending") }); refresh();
    try {
      await flushOutbox(refresh);
      await flushOutbox(refresh);  // if another send was under way, this one covers the new report
    } finally { setSending(false); }
    const done = readOutbox().find((e) => e.report.report_id === report.report_id);
    if (done && done.state === "rejected") { backToForm(done); return; }
    // kept in the outbox (sent, or waiting for the network): the form starts afresh
    const fresh = newDraft(area.id); saveDraft(fresh); setDraft(fresh); refresh();
    setMsg(done && done.state === "accepted" ? { kind: "ok", text: t("sent") } : { kind: "info", text: t("saved") });
  };
  const mine = outbox.filter((e) => e.report.area_id === area.id).slice(-10).reverse();
  const refusedKeys = Object.keys(refused);
  return html`<main id="main">
    ${!online && html`<${Msg} kind="info">${t("offline")}<//>`}
    <form class="card" id="report-form" onSubmit=${submit} aria-labelledby="form-title">
      <h2 id="form-title">${t("report")}: ${area.name} · ${periodText(area.current_period)}</h2>
      <div class="row"><div><label for="area">${t("area")}</label>
        <select id="area" value=${areaId} onChange=${(e) => { setRefusal(null); setMsg(null); setAreaId(e.target.value); }}>${areas.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</select></div></div>
      <p><label><input type="checkbox" checked=${draft.nothing_to_report} onChange=${(e) => setDraft({ ...draft, nothing_to_report: e.target.checked })}/> ${t("nothing")}</label></p>
      ${groupedItems(checklist).map(({ group, items }) => {
        const fields = items.map((item) => html`<${ItemField} item=${item} answer=${draft.answers[item.code]} places=${area.places || []}
          disabled=${draft.nothing_to_report} refused=${refused} onChange=${(a) => setAnswer(item.code, a)}/>`);
        return group ? html`<section class="group" data-group=${group.code} aria-labelledby=${"g-" + group.code}>
          <h3 id=${"g-" + group.code}>${own(group, "label")}</h3>${fields}</section>` : fields;
      })}
      <label for="overall">${t("overall")} – <span class="warn">${t("noPii")}</span></label>
      <textarea id="overall" maxlength="500" value=${draft.note} aria-invalid=${refused.note ? "true" : undefined}
        aria-describedby=${refused.note ? "overall-error" : undefined}
        onInput=${(e) => { unmark("note"); setDraft({ ...draft, note: e.target.value }); }}></textarea>
      ${refused.note && html`<p class="field-error" id="overall-error">${t("refusedField")}: ${refused.note}</p>`}
      <p><button class="primary" type="submit" id="submit" disabled=${sending}>${t("submit")}</button></p>
      ${refusal && html`<div class="msg bad" role="alert" id="refusal"><p>${t("refused")}</p>
        <ul>${refusedKeys.map((k) => html`<li>${refusedName(checklist, k) ? html`<strong>${refusedName(checklist, k)}</strong>: ` : ""}${refused[k]}</li>`)}</ul></div>`}
      ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    </form>
    <section class="card" aria-labelledby="mine-title"><h2 id="mine-title">${t("mine")}</h2>
      <ul class="plain" id="outbox">${mine.map((e) => html`<li data-report=${e.report.report_id} data-state=${e.state}>
        <strong>${periodText(e.report.period)}</strong> · ${e.area_name || e.report.area_id} ·
        <span class=${"badge " + (e.state === "accepted" ? "ok" : e.state === "rejected" ? "bad" : "warn")}>${t(e.state)}</span>
        ${e.answer && e.answer.late ? html` <span class="badge warn">${t("late")}</span>` : ""}
        ${e.state === "rejected" ? html` <span class="hint">${Object.values(refusalByField(typeof e.error === "object" && e.error ? e.error : { detail: e.error })).join(" ")}</span>
          <button type="button" class="secondary fix" onClick=${() => backToForm(e)}>${t("fixIt")}</button>` : ""}</li>`)}</ul>
    </section>
    <section class="card" aria-labelledby="fb-title"><h2 id="fb-title">${t("reporterFeedback")}</h2>
      ${picture ? html`<${PictureSummary} picture=${picture}/>` : html`<p class="hint">${t("noPicture")}</p>`}</section>
  </main>`;
}

function PictureSummary({ picture }) {
  const items = Object.values(picture.items || {}).filter((i) => i.value > 0).sort((a, b) => (b.flag ? 1 : 0) - (a.flag ? 1 : 0));
  return html`<p><strong>${picture.area_name || ""} · ${periodText(picture.period)}</strong> · ${t("version")} ${picture.version}</p>
    <p>${pick(picture.first_analysis)}</p>
    ${(picture.comments || []).map((c) => html`<blockquote class="comment">${c.text || c.comment}</blockquote>`)}
    <table><thead><tr><th>${t("item")}</th><th>${t("value")}</th><th>${t("trend")}</th></tr></thead>
    <tbody>${items.map((i) => html`<tr><td>${label(i)}</td><td>${i.value}</td><td>${i.flag ? html`<span class="badge bad">${flagText(i.flag)}</span>` : trendText(i.trend)}</td></tr>`)}</tbody></table>`;
}

// ---------------------------------------------------------------------------------------------
// Dashboard
function Dashboard({ me, checklist, liveTick }) {
  const muni = (me.municipalities || [])[0];
  const start = (me.areas && me.areas[0] && me.areas[0].current_period) || isoWeek(new Date());
  const [period, setPeriod] = useState(shiftWeek(start, -1));  // the week just closed: the one to review
  const [data, setData] = useState(null);
  const [err, setErr] = useState("");
  const [sel, setSel] = useState(null);
  const [analyses, setAnalyses] = useState([]);
  const [analysis, setAnalysis] = useState(null);  // the newest analysis in full: its problems and the municipality's name
  const load = useCallback(() => {
    if (!muni) return;
    api("aggregator", `/v1/municipalities/${muni}/pictures/${period}`).then((d) => { setData(d); setErr(""); }).catch((e) => setErr(pick(e.message)));
  }, [muni, period]);
  useEffect(load, [load, liveTick]);
  useEffect(() => {
    if (!muni) return;
    // the list gives each analysis's number of problems only; the problems themselves are in the analysis
    api("analysis", `/v1/analyses?municipality_id=${muni}`).then((d) => {
      const list = Array.isArray(d) ? d : d.analyses || []; setAnalyses(list);
      if (list[0]) return api("analysis", `/v1/analyses/${encodeURIComponent(list[0].id)}`).then(setAnalysis);
      setAnalysis(null); return null;
    }).catch(() => { setAnalyses([]); setAnalysis(null); });
  }, [muni]);
  const items = checklist.items;
  const areaName = (id) => ((me.areas || []).find((a) => a.id === id) || {}).name || "";
  const muniName = analysis && analysis.municipality_id === muni ? analysis.municipality_name : "";
  return html`<main id="main">
    <section class="card" aria-labelledby="dash-title">
      <div class="row" style="align-items:center"><h2 id="dash-title" style="flex:2">${t("dashboard")}${muniName ? ` · ${muniName}` : ""} · ${periodText(period)}</h2>
        <div style="flex:0 0 auto"><button class="secondary" onClick=${() => setPeriod(shiftWeek(period, -1))}>← ${t("prev")}</button>
        <button class="secondary" onClick=${() => setPeriod(shiftWeek(period, 1))}>${t("next")} →</button></div></div>
      ${err && html`<${Msg} kind="bad">${err}<//>`}
      <div class="legend" aria-hidden="true">${[0, 1, 2, 3].map((n) => html`<span><i class=${"lvl-" + n}></i>${n} ${t("levels")[n]}</span>`)}
        <span><i class="lvl-none"></i>${t("legendNone")}</span><span><b>!</b> ${t("legendFlag")}</span></div>
      <div class="heat"><table id="heatmap"><caption class="sr">${t("dashboard")}</caption>
        <thead><tr><th scope="col">${t("area")}</th><th scope="col">${t("completeness")}</th><th scope="col">${t("status")}</th>
          ${items.map((i) => html`<th scope="col" class="item" title=${label(i)}>${label(i)}</th>`)}</tr></thead>
        <tbody>${(data ? data.areas : []).map((p) => {
          const c = p.completeness || {}; const rate = Math.round((c.rate || 0) * 100);
          return html`<tr data-area=${p.area_id}>
            <th scope="row"><button class="secondary" style="padding:.2rem .5rem" onClick=${() => setSel(p.area_id)} aria-pressed=${sel === p.area_id}>${p.area_name || areaName(p.area_id)}</button></th>
            <td><span class=${"badge " + (!c.expected ? "info" : rate >= 80 ? "ok" : rate >= 50 ? "warn" : "bad")} title=${`${c.received || 0} ${t("by")} ${c.expected || 0}`}>${c.received || 0}/${c.expected || 0}</span></td>
            <td><span class=${"badge " + (p.status === "published" ? "ok" : "info")}>${p.status === "published" ? `${t("pub")} v${p.version}` : t("open")}</span></td>
            ${items.map((i) => { const it = p.items && p.items[i.code]; const lv = p.reports ? cellLevel(it) : null;
              return html`<td class=${"cell " + levelClass(lv)} title=${`${label(i)}: ${it ? it.value : t("noReport")}${it && it.flag ? " · " + flagText(it.flag) : ""}`}>${lv == null ? "–" : it.value || ""}${it && it.flag ? "!" : ""}</td>`; })}
          </tr>`; })}</tbody></table></div>
    </section>
    ${sel ? html`<${AreaDetail} key=${sel + period} areaId=${sel} areaName=${areaName(sel)} period=${period} me=${me} checklist=${checklist} onPublished=${load} liveTick=${liveTick}/>` : html`<p class="hint">${t("choose")}</p>`}
    <${Strategic} latest=${analyses[0]} analysis=${analysis}/>
  </main>`;
}

// The publish flow's texts (a picture that is early or incomplete is sent only once the key function confirms)
const PUBLISH_TEXT = {
  sv: {
    confirmTitle: "Lägesbilden är inte komplett", received: (r, e) => `${r} av ${e} förväntade ${e === 1 ? "rapportör" : "rapportörer"} har rapporterat`,
    threshold: (p, l) => `(${p} %, gränsen är ${l} %)`, left: "Tid kvar till deadline", missing: "Har inte rapporterat",
    everyone: "Alla förväntade har rapporterat.", sendAnyway: "Publicera ändå", cancel: "Avbryt",
    confirmHint: "Lägesbilden skickas till alla mottagare som den är nu.",
    unchanged: (v) => `Inget nytt sedan version ${v}: ingenting skickades.`, days: "dygn", hours: "tim", minutes: "min",
  },
  en: {
    confirmTitle: "The picture is not complete", received: (r, e) => `${r} of ${e} expected ${e === 1 ? "reporter has" : "reporters have"} reported`,
    threshold: (p, l) => `(${p} %, the threshold is ${l} %)`, left: "Time left to the deadline", missing: "Not reported yet",
    everyone: "Everyone expected has reported.", sendAnyway: "Publish anyway", cancel: "Cancel",
    confirmHint: "The picture is sent to every recipient as it is now.",
    unchanged: (v) => `Nothing new since version ${v}: nothing was sent.`, days: "days", hours: "h", minutes: "min",
  },
};
const pt = (k) => PUBLISH_TEXT[LANG][k];
function timeLeft(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600), m = Math.floor((seconds % 3600) / 60);
  return d ? `${d} ${pt("days")} ${h} ${pt("hours")}` : `${h} ${pt("hours")} ${m} ${pt("minutes")}`;
}

// What a publication would send before its deadline or below the threshold, and the key function's choice
function ConfirmPublish({ problem, onConfirm, onCancel }) {
  const ref = useRef(null);
  useEffect(() => { const d = ref.current; if (d && !d.open) d.showModal(); }, []);
  const c = problem.completeness || {};
  const missing = problem.missing_reporters || [];
  const early = (problem.reasons || []).includes("before_deadline");
  return html`<dialog ref=${ref} id="publish-confirm" aria-labelledby="confirm-title" onCancel=${(e) => { e.preventDefault(); onCancel(); }}>
    <h2 id="confirm-title">${pt("confirmTitle")}</h2>
    <p id="confirm-received">${pt("received")(c.received || 0, c.expected || 0)} ${pt("threshold")(Math.round((c.rate || 0) * 100), Math.round((c.threshold || 0) * 100))}</p>
    ${early && problem.seconds_to_deadline != null && html`<p id="confirm-left">${pt("left")}: ${timeLeft(problem.seconds_to_deadline)}</p>`}
    ${missing.length ? html`<h3>${pt("missing")}</h3><ul class="plain" id="confirm-missing">${missing.map((m) => html`<li>${m.name}${m.actor ? ` (${m.actor})` : ""}</li>`)}</ul>`
      : problem.missing_reporters ? html`<p>${pt("everyone")}</p>` : ""}
    <p class="hint">${pt("confirmHint")}</p>
    <p><button class="primary" type="button" id="confirm-publish" onClick=${onConfirm}>${pt("sendAnyway")}</button>
      ${" "}<button type="button" id="cancel-publish" onClick=${onCancel}>${pt("cancel")}</button></p>
  </dialog>`;
}

// The reporters' notes of an area's picture, grouped by item, each with its place ("Klotter · torget: …").
// The aggregator gives their text to key functions, admins and police only; others get how many there are.
const NOTE_TEXT = {
  sv: { notes: "Rapportörernas anteckningar", count: (n) => `${n} ${n === 1 ? "anteckning" : "anteckningar"} – texten visas för nyckelfunktioner och polis.` },
  en: { notes: "Reporters' notes", count: (n) => `${n} ${n === 1 ? "note" : "notes"} – the text is shown to key functions and police.` },
};
function AreaNotes({ pic, checklist }) {
  const notes = pic.notes || [], count = pic.note_count || notes.length;
  if (!count) return "";
  const groups = [];
  for (const n of notes) {
    const g = groups.find((x) => x.item === n.item);
    if (g) g.notes.push(n); else groups.push({ item: n.item, notes: [n] });
  }
  const name = (n) => itemName(checklist, n.item) || (LANG === "sv" ? n.label_sv : n.label_en) || n.item;
  return html`<h3>${NOTE_TEXT[LANG].notes}</h3>${notes.length ? html`<ul class="plain" id="notes">${groups.map((g) => html`<li data-item=${g.item}>
      <ul class="plain">${g.notes.map((n) => html`<li><strong>${name(n)}</strong>${n.place_name ? ` · ${n.place_name}` : ""}: ${n.text}</li>`)}</ul></li>`)}</ul>`
    : html`<p class="hint" id="notes-count">${NOTE_TEXT[LANG].count(count)}</p>`}`;
}

function AreaDetail({ areaId, areaName, period, me, checklist, onPublished, liveTick }) {
  const [pic, setPic] = useState(null); const [series, setSeries] = useState([]); const [alerts, setAlerts] = useState([]);
  const [measures, setMeasures] = useState([]); const [comment, setComment] = useState(""); const [msg, setMsg] = useState(null);
  const load = () => {
    api("aggregator", `/v1/areas/${areaId}/pictures/${period}`).then(setPic).catch(() => setPic(null));
    api("aggregator", `/v1/areas/${areaId}/pictures?from=${shiftWeek(period, -11)}&to=${period}`).then((s) => setSeries(s.pictures || [])).catch(() => setSeries([]));
    api("aggregator", `/v1/areas/${areaId}/alerts`).then((a) => setAlerts(Array.isArray(a) ? a : a.alerts || [])).catch(() => setAlerts([]));
    api("analysis", `/v1/measures?area_id=${areaId}`).then((m) => setMeasures(Array.isArray(m) ? m : m.measures || [])).catch(() => setMeasures([]));
  };
  useEffect(load, [areaId, period, liveTick]);
  const canPublish = (me.roles || []).some((r) => r === "key_function" || r === "admin");
  const [confirming, setConfirming] = useState(null);
  const send = async (confirm) => {
    setConfirming(null);
    const body = { ...(comment ? { comment } : {}), ...(confirm ? { confirm_incomplete: true } : {}) };
    try {
      const r = await api("aggregator", `/v1/areas/${areaId}/pictures/${period}/publish`, { method: "POST", body });
      setMsg({ kind: "ok", text: r && r.unchanged ? pt("unchanged")(r.version) : t("publishedOk") }); setComment(""); load(); onPublished();
    } catch (e) {
      if (e.status === 409 && e.data && e.data.confirm_field) { setMsg(null); setConfirming(e.data); return; }
      setMsg({ kind: "bad", text: pick(e.message) });
    }
  };
  const publish = (ev) => { ev.preventDefault(); send(false); };
  const flagged = pic ? Object.values(pic.items || {}).filter((i) => i.flag).map((i) => i.item) : [];
  const chartItems = flagged.length ? flagged.slice(0, 5) : (pic ? Object.values(pic.items || {}).filter((i) => i.value > 0).map((i) => i.item).slice(0, 3) : []);
  // the open alerts, newest first
  const open = alerts.filter((a) => !a.resolved_at && a.status !== "resolved").sort((a, b) => (a.period < b.period ? 1 : a.period > b.period ? -1 : 0));
  const shown = open.slice(0, 8);
  const name = (pic && pic.area_name) || areaName;
  return html`<div class="grid2">
    <section class="card" aria-labelledby="area-title"><h2 id="area-title">${name} · ${periodText(period)}</h2>
      ${pic && html`<p><span class=${"badge " + (pic.status === "published" ? "ok" : "info")}>${pic.status === "published" ? `${t("pub")} ${t("version")} ${pic.version}` : t("open")}</span>
        · <span id="area-counts">${pic.reports} ${t(pic.reports === 1 ? "oneReport" : "reports")} ${t("fromReporters")((pic.completeness || {}).received || 0, (pic.completeness || {}).expected || 0)}</span> · ${(pic.completeness || {}).late || 0} ${t("late")}</p>
        <h3>${t("firstAnalysis")}</h3><p id="first-analysis">${pick(pic.first_analysis)}</p>
        ${(pic.comments || []).map((c) => html`<blockquote>${c.text || c.comment}${c.by === me.id ? html` <span class="hint">– ${me.name}</span>` : ""}</blockquote>`)}
        <${AreaNotes} pic=${pic} checklist=${checklist}/>`}
      ${canPublish && html`<form onSubmit=${publish}><label for="comment">${t("comment")}</label>
        <textarea id="comment" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea>
        <p><button class="primary" type="submit" id="publish">${t("publish")}</button></p></form>`}
      ${confirming && html`<${ConfirmPublish} problem=${confirming} onConfirm=${() => send(true)} onCancel=${() => setConfirming(null)}/>`}
      ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    </section>
    <section class="card"><h2>${t("trend")}</h2><${TrendChart} series=${series} items=${chartItems} checklist=${checklist}/>
      <h3>${t("alerts")}</h3>${open.length ? html`<ul class="plain" id="alerts">${shown.map((a) => html`<li><span class=${"badge " + (a.kind === "flag:high" ? "bad" : "warn")}>${kindText(a.kind)}</span>${" "}${itemName(checklist, a.item)} <span class="hint">· ${t("from")} ${periodText(a.period)}</span></li>`)}</ul>
        ${open.length > shown.length ? html`<p class="hint">${t("moreAlerts")(open.length - shown.length)}</p>` : ""}` : html`<p class="hint">${t("noAlerts")}</p>`}
      <h3>${t("measures")}</h3>${measures.length ? html`<ul class="plain" id="measures">${measures.map((m) => html`<li><strong>${m.title}</strong> · ${coded("measureStatus", m.status)} · ${t("from")} ${dateText(m.start)}</li>`)}</ul>` : html`<p class="hint">${t("noMeasures")}</p>`}
    </section></div>`;
}

function Strategic({ latest, analysis }) {
  const [err, setErr] = useState("");
  // the report is saved as a file, never opened as a page of this origin (where its content could act as the app)
  const download = (id, kind) => saveFile("analysis", `/v1/analyses/${encodeURIComponent(id)}/report.${kind}?lang=${LANG}`,
    `analys-${id.replace(/[^A-Za-z0-9-]+/g, "-")}-${LANG}.${kind}`).then(() => setErr(""), (e) => setErr(pick(e.message)));
  const full = analysis && latest && analysis.id === latest.id ? analysis : null;
  // ongoing problems first, then as the analysis ranks them (longest held first)
  const problems = full ? [...(full.persistent_problems || [])].sort((a, b) => (b.ongoing ? 1 : 0) - (a.ongoing ? 1 : 0)) : [];
  const shown = problems.slice(0, 12);
  return html`<section class="card" aria-labelledby="strat-title"><h2 id="strat-title">${t("strategic")}${latest ? ` · ${periodText(latest.period)}` : ""}</h2>
    ${latest ? html`${latest.summary && html`<p>${pick(latest.summary)}</p>`}
      <h3>${t("persistent")}</h3>${problems.length ? html`<ul class="plain" id="persistent">${shown.map((p) => html`<li data-area=${p.area_id} data-item=${p.item}>
          <strong>${p.area_name}</strong>: ${LANG === "sv" ? p.label_sv : p.label_en}${" "}<span class=${"badge " + (p.ongoing ? "bad" : "ok")}>${p.ongoing ? t("ongoing") : `${t("endedAt")} ${periodText(p.held_at[p.held_at.length - 1])}`}</span>
          <br/><span class="hint">${t("since")} ${periodText(p.held_at[0])} · ${t("flaggedOf")(p.max_flagged, p.n)}</span></li>`)}</ul>
        ${problems.length > shown.length ? html`<p class="hint">${t("moreProblems")(problems.length - shown.length)}</p>` : ""}`
        : html`<p class="hint">${full || !latest.persistent_problems ? t("noPersistent") : "…"}</p>`}
      <p><button class="secondary" id="report-html" onClick=${() => download(latest.id, "html")}>${t("downloadReport")}</button>
        <button class="secondary" id="report-pdf" onClick=${() => download(latest.id, "pdf")}>${t("downloadPdf")}</button></p>
      ${err && html`<${Msg} kind="bad">${err}<//>`}` : html`<p class="hint">${t("noAnalysis")}</p>`}
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// Live updates from the notifier's stream (fetch, since EventSource cannot send a token)
function useLive(enabled) {
  const [tick, setTick] = useState(0); const [live, setLive] = useState(false);
  useEffect(() => {
    if (!enabled) return;
    let stop = false; const ctrl = new AbortController();
    (async () => {
      while (!stop) {
        try {
          const res = await fetch("/api/notifier/v1/stream", { headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" }, signal: ctrl.signal });
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

// ---------------------------------------------------------------------------------------------
function App() {
  const [me, setMe] = useState(null); const [checklist, setChecklist] = useState(null);
  const [route, setRoute] = useState(location.hash || "#report"); const [online, setOnline] = useState(navigator.onLine);
  const [, force] = useState(0);
  useEffect(() => { const h = () => setRoute(location.hash || "#report"); addEventListener("hashchange", h); return () => removeEventListener("hashchange", h); }, []);
  useEffect(() => {
    const on = () => { setOnline(true); flushOutbox(() => force((x) => x + 1)); }; const off = () => setOnline(false);
    addEventListener("online", on); addEventListener("offline", off);
    const timer = setInterval(() => navigator.onLine && flushOutbox(() => force((x) => x + 1)), 15000);
    return () => { removeEventListener("online", on); removeEventListener("offline", off); clearInterval(timer); };
  }, []);
  useEffect(() => { if (token()) api("intake", "/v1/me").then(setMe).catch(() => {}); }, []);
  useEffect(() => { if (me) api("intake", "/v1/checklists/current").then((c) => { setChecklist(c); localStorage.setItem("est.checklist", JSON.stringify(c)); })
    .catch(() => { const c = localStorage.getItem("est.checklist"); if (c) setChecklist(JSON.parse(c)); }); }, [me]);
  useEffect(() => { if (me) { localStorage.setItem("est.me", JSON.stringify(me)); flushOutbox(() => force((x) => x + 1)); } }, [me]);
  useEffect(() => { if (!me && token() && !navigator.onLine) { const m = localStorage.getItem("est.me"); if (m) setMe(JSON.parse(m)); } }, []);
  const isDash = (me && (me.roles || []).some((r) => r !== "reporter"));
  const [tick, live] = useLive(!!me && isDash && route === "#dashboard");
  const switchLang = () => { LANG = LANG === "sv" ? "en" : "sv"; localStorage.setItem("est.lang", LANG); document.documentElement.lang = LANG; force((x) => x + 1); };
  const signOut = () => { localStorage.removeItem("est.token"); localStorage.removeItem("est.me"); setMe(null); };
  document.documentElement.lang = LANG;
  // the page shell outside the app (title, skip link) speaks the reader's language too
  document.title = t("app");
  const skip = document.querySelector("a.skip"); if (skip) skip.textContent = t("skip");
  const header = html`<header class="top"><h1>${t("app")}</h1><nav aria-label=${t("menu")}>
      ${me && (me.roles || []).includes("reporter") && html`<a href="#report" aria-current=${route === "#report" ? "page" : undefined}>${t("report")}</a>`}
      ${me && isDash && html`<a href="#dashboard" aria-current=${route === "#dashboard" ? "page" : undefined}>${t("dashboard")}</a>`}
      ${me && isDash && route === "#dashboard" && html`<span class="live badge ${live ? "ok" : "warn"}" aria-live="polite">${live ? t("live") : t("liveOff")}</span>`}
      <button onClick=${switchLang} lang=${LANG === "sv" ? "en" : "sv"}>${t("lang")}</button>
      ${me && html`<button onClick=${signOut}>${t("signout")}</button>`}</nav></header>`;
  if (!me) return html`${header}<${SignIn} onIn=${(m) => { setMe(m); location.hash = (m.roles || []).includes("reporter") ? "#report" : "#dashboard"; }}/>`;
  if (!checklist) return html`${header}<p class="loading">…</p>`;
  const showReporter = route !== "#dashboard" && (me.roles || []).includes("reporter");
  return html`${header}${showReporter ? html`<${Reporter} me=${me} checklist=${checklist} online=${online} tick=${tick}/>` : html`<${Dashboard} me=${me} checklist=${checklist} liveTick=${tick}/>`}`;
}

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
const root = document.getElementById("root");
root.textContent = "";
render(html`<${App}/>`, root);

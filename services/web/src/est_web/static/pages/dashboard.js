// The key function's dashboard: the municipality's heatmap, an area's picture (publishing, notes, trend,
// alerts, measures) and the strategic analysis.
import { html, useState, useEffect, useCallback, useRef, LANG, texts, t, label, itemName, pick, coded, flagText, kindText, api, saveFile, isoWeek, dateText, periodText, periodTick, shiftWeek, Msg } from "../core.js";
import { MunicipalityMap, ViewToggle } from "./map.js";

// ---------------------------------------------------------------------------------------------
// Heatmap cells and the trend chart
const levelClass = (cell) => (cell == null ? "lvl-none" : `lvl-${Math.max(0, Math.min(3, cell))}`);
function cellLevel(it) {
  if (!it) return null;
  if (it.answer === "level") return Math.round(it.value);
  if (it.flag === "high") return 3;
  if (it.flag === "rising" || it.flag === "new") return 2;
  return it.value > 0 ? 1 : 0;
}

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
// The municipality's tables as files for Excel: the picture (the heatmap's numbers) and who reported per actor;
// an area's reports of the period for those who read them (key functions, admins, police)
const dl = texts({
  sv: { downloads: "Ladda ner", picture: "Lägesbilden", completeness: "Inrapportering per aktör", reports: "Rapporterna", excel: "Excel", csv: "CSV" },
  en: { downloads: "Download", picture: "The picture", completeness: "Reporting per actor", reports: "The reports", excel: "Excel", csv: "CSV" },
});
// one table as Excel and CSV: two buttons, the file named by the table and the period
function DownloadPair({ id, path, file, name, onError }) {
  const save = (fmt) => saveFile("aggregator", `${path}?format=${fmt}&lang=${LANG}`, `${file}.${fmt}`)
    .then(() => onError(""), (e) => onError(pick(e.message)));
  return html`<span class="downloads" id=${id}>${name}:
    <button class="secondary small" onClick=${() => save("xlsx")}>${dl("excel")}</button>
    <button class="secondary small" onClick=${() => save("csv")}>${dl("csv")}</button></span>`;
}
function Downloads({ muni, period }) {
  const [err, setErr] = useState("");
  const base = `/v1/municipalities/${muni}/pictures/${period}`;
  return html`<p class="row-downloads"><span class="hint">${dl("downloads")}</span>
    <${DownloadPair} id="download-picture" path=${base} file=${`lagesbild-${muni}-${period}`} name=${dl("picture")} onError=${setErr}/>
    <${DownloadPair} id="download-completeness" path=${`${base}/completeness`} file=${`inrapportering-${muni}-${period}`} name=${dl("completeness")} onError=${setErr}/></p>
    ${err && html`<${Msg} kind="bad">${err}<//>`}`;
}
const READS_REPORTS = ["key_function", "admin", "police"];
function ReportDownloads({ areaId, period }) {
  const [err, setErr] = useState("");
  return html`<p class="row-downloads"><span class="hint">${dl("downloads")}</span>
    <${DownloadPair} id="download-reports" path=${`/v1/areas/${areaId}/reports/${period}`} file=${`rapporter-${areaId}-${period}`} name=${dl("reports")} onError=${setErr}/></p>
    ${err && html`<${Msg} kind="bad">${err}<//>`}`;
}

// ---------------------------------------------------------------------------------------------
// Dashboard
export function Dashboard({ me, checklist, liveTick }) {
  const muni = (me.municipalities || [])[0];
  const start = (me.areas && me.areas[0] && me.areas[0].current_period) || isoWeek(new Date());
  const [period, setPeriod] = useState(shiftWeek(start, -1));  // the week just closed: the one to review
  const [data, setData] = useState(null);
  const [err, setErr] = useState("");
  const [sel, setSel] = useState(null);
  const [view, setView] = useState(() => localStorage.getItem("est.view") || "table");  // map or table (heatmap)
  const showAs = (v) => { localStorage.setItem("est.view", v); setView(v); };
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
      <${ViewToggle} view=${view} onView=${showAs}/>
      ${view === "map" ? html`<${MunicipalityMap} areas=${me.areas} pictures=${data ? data.areas : []} itemLevel=${cellLevel} selected=${sel} onSelect=${setSel}/>` : html`
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
          </tr>`; })}</tbody></table></div>`}
      ${muni && html`<${Downloads} muni=${muni} period=${period}/>`}
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

// A picture's published versions, each with when it went out and what it changed in words (the aggregator
// writes "klotter: 1 → 2", "klotter flag: - → rising", "completeness.received: 1 → 2", "klotter → klotter_tagg")
const vt = texts({
  sv: { versions: "Versioner", version: "Version", published: "publicerad", revision: "rättelse", first: "Första versionen.",
    nothing: "Inga ändringar.", reports: "Rapporter", comments: "Kommentarer", received: "Inkomna", late: "Sena",
    nothing_to_report: "Inget att rapportera", flag: (i) => `${i}, flagga`, renamed: (a, b) => `${a} heter nu ${b}`,
    closed: "Avslutade larm", resolvedIn: "avslutat", noClosed: "Inga avslutade larm.", none: "ingen" },
  en: { versions: "Versions", version: "Version", published: "published", revision: "revision", first: "The first version.",
    nothing: "No changes.", reports: "Reports", comments: "Comments", received: "Received", late: "Late",
    nothing_to_report: "Nothing to report", flag: (i) => `${i}, flag`, renamed: (a, b) => `${a} is now ${b}`,
    closed: "Resolved alerts", resolvedIn: "resolved", noClosed: "No resolved alerts.", none: "none" },
});
const CHANGE = /^([a-z0-9_.]+)( flag)?: (.*) → (.*)$/, RENAME = /^([a-z0-9_]+) → ([a-z0-9_]+)$/;
function changeText(text, checklist) {
  const num = (v) => (LANG === "sv" ? String(v).replace(".", ",") : String(v));
  const renamed = RENAME.exec(text);
  if (renamed) return vt("renamed")(itemName(checklist, renamed[1]), itemName(checklist, renamed[2]));
  const m = CHANGE.exec(text);
  if (!m) return text;
  const [, what, flag, before, after] = m;
  if (what === "reports" || what === "comments") return `${vt(what)}: ${before} → ${after}`;
  if (what.startsWith("completeness.")) return `${vt(what.slice(13))}: ${before} → ${after}`;
  if (flag) { const word = (f) => (f === "-" ? vt("none") : flagText(f));
    return `${vt("flag")(itemName(checklist, what))}: ${word(before)} → ${word(after)}`; }
  return `${itemName(checklist, what)}: ${num(before)} → ${num(after)}`;
}
const when = (iso) => new Date(iso).toLocaleString(LANG === "sv" ? "sv-SE" : "en-GB",
  { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
function Versions({ areaId, period, latest, checklist }) {
  const [bodies, setBodies] = useState({});
  useEffect(() => {
    for (let v = latest; v >= Math.max(1, latest - 9); v--)
      api("aggregator", `/v1/areas/${areaId}/pictures/${period}?version=${v}`).then((b) => setBodies((o) => ({ ...o, [v]: b }))).catch(() => {});
  }, [areaId, period, latest]);
  const shown = Array.from({ length: Math.min(latest, 10) }, (_, i) => latest - i);
  return html`<h3>${vt("versions")}</h3><ul class="plain" id="versions">${shown.map((v) => { const b = bodies[v];
    return html`<li data-version=${v}><details open=${v === latest}><summary><strong>${vt("version")} ${v}</strong>${b ? ` · ${vt("published")} ${when(b.published_at)}` : ""}${b && b.revision ? html` <span class="badge warn">${vt("revision")}</span>` : ""}</summary>
      ${b ? (b.changes || []).length ? html`<ul class="changes">${b.changes.map((c) => html`<li>${changeText(c, checklist)}</li>`)}</ul>`
        : html`<p class="hint">${v === 1 ? vt("first") : vt("nothing")}</p>` : html`<p class="hint">…</p>`}</details></li>`; })}</ul>`;
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
  const closed = alerts.filter((a) => a.status === "resolved").sort((a, b) => (a.period < b.period ? 1 : a.period > b.period ? -1 : 0));
  const name = (pic && pic.area_name) || areaName;
  return html`<div class="grid2">
    <section class="card" aria-labelledby="area-title"><h2 id="area-title">${name} · ${periodText(period)}</h2>
      ${pic && html`<p><span class=${"badge " + (pic.status === "published" ? "ok" : "info")}>${pic.status === "published" ? `${t("pub")} ${t("version")} ${pic.version}` : t("open")}</span>
        · <span id="area-counts">${pic.reports} ${t(pic.reports === 1 ? "oneReport" : "reports")} ${t("fromReporters")((pic.completeness || {}).received || 0, (pic.completeness || {}).expected || 0)}</span> · ${(pic.completeness || {}).late || 0} ${t("late")}</p>
        <h3>${t("firstAnalysis")}</h3><p id="first-analysis">${pick(pic.first_analysis)}</p>
        ${(pic.comments || []).map((c) => html`<blockquote>${c.text || c.comment}${c.by === me.id ? html` <span class="hint">– ${me.name}</span>` : ""}</blockquote>`)}
        <${AreaNotes} pic=${pic} checklist=${checklist}/>
        ${pic.version > 0 && html`<${Versions} areaId=${areaId} period=${period} latest=${pic.version} checklist=${checklist}/>`}
        ${(me.roles || []).some((r) => READS_REPORTS.includes(r)) && html`<${ReportDownloads} areaId=${areaId} period=${period}/>`}`}
      ${canPublish && html`<form onSubmit=${publish}><label for="comment">${t("comment")}</label>
        <textarea id="comment" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea>
        <p><button class="primary" type="submit" id="publish">${t("publish")}</button></p></form>`}
      ${confirming && html`<${ConfirmPublish} problem=${confirming} onConfirm=${() => send(true)} onCancel=${() => setConfirming(null)}/>`}
      ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    </section>
    <section class="card"><h2>${t("trend")}</h2><${TrendChart} series=${series} items=${chartItems} checklist=${checklist}/>
      <h3>${t("alerts")}</h3>${open.length ? html`<ul class="plain" id="alerts">${shown.map((a) => html`<li><span class=${"badge " + (a.kind === "flag:high" ? "bad" : "warn")}>${kindText(a.kind)}</span>${" "}${itemName(checklist, a.item)} <span class="hint">· ${t("from")} ${periodText(a.period)}</span></li>`)}</ul>
        ${open.length > shown.length ? html`<p class="hint">${t("moreAlerts")(open.length - shown.length)}</p>` : ""}` : html`<p class="hint">${t("noAlerts")}</p>`}
      ${closed.length ? html`<details id="alert-history"><summary>${vt("closed")} (${closed.length})</summary><ul class="plain">${closed.map((a) => html`<li>
        <span class="badge ok">${kindText(a.kind)}</span>${" "}${itemName(checklist, a.item)} <span class="hint">· ${t("from")} ${periodText(a.period)} · ${vt("resolvedIn")} ${periodText(a.resolved_period)}</span></li>`)}</ul></details>` : ""}
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

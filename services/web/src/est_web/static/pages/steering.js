// The beredningsgrupp's and styrgrupp's page: compile a strategic analysis, read it (summary, persistent
// problems per area, a chart of flagged periods, downloads), and decide, re-decide and follow up measures
// (the styrgrupp; everyone else reads them).
import { html, useState, useEffect, LANG, t, texts, coded, api, saveFile, pick, mondayOf, dateRange, dateText, Msg } from "../core.js";

const tx = texts({
  sv: {
    page: "Styrning", compileTitle: "Sammanställ en strategisk analys", kind: "Slag av period", periodChoice: "Period",
    kinds: { tertial: "Tertial", quarter: "Kvartal", year: "År" }, compile: "Sammanställ analysen",
    compiling: (p) => `Sammanställer analysen för ${p} …`, compiled: (p) => `Analysen för ${p} är sammanställd.`,
    analyses: "Sammanställda analyser", choose: "Välj analys", noAnalysis: "Ingen strategisk analys är sammanställd ännu.",
    revision: "version", at: "sammanställd", analysisTitle: "Strategisk analys", summary: "Sammanfattning",
    chartTitle: "Flaggade perioder per område", chartOf: (a, f, n) => `${a}: ${f} av ${n} perioder flaggade`,
    chartHint: "En period räknas som flaggad när minst en punkt var ökande, hög eller ny.",
    problems: "Bestående problem per område", noProblems: "Inga bestående problem.", ongoing: "pågår",
    ended: (w) => `upphörde ${w}`, since: (w) => `sedan ${w}`, flagged: (k, n) => `flaggad ${k} av ${n} perioder`,
    week: (n) => `vecka ${n}`, downloads: "Ladda ner", reportHtml: "Rapporten (HTML)", reportPdf: "Rapporten (PDF)",
    reportDocx: "Rapporten (Word)", problemsCsv: "Bestående problem (CSV)", problemsXlsx: "Bestående problem (Excel)",
    measuresCsv: "Åtgärder (CSV)", measuresXlsx: "Åtgärder (Excel)",
    measures: "Åtgärder", noMeasures: "Inga beslutade åtgärder.", readOnly: "Åtgärder beslutas och omprövas av styrgruppen.",
    decideTitle: "Besluta en åtgärd", area: "Område", linked: "Problem som åtgärden riktar sig mot",
    pickProblem: "Välj minst ett problem.", noAreaProblems: "Området har inga bestående problem i analysen.",
    title: "Rubrik", description: "Beskrivning", actor: "Ansvarig aktör", decidedBy: "Beslutat av",
    decidedByDefault: "Styrgruppen", start: "Startdatum", end: "Slutdatum (valfritt)", hours: "Timmar",
    money: "Kronor", status: "Status", decide: "Besluta åtgärden", decided: "Åtgärden är beslutad.",
    resources: "Resurser", none: "inga angivna", responsible: "Ansvarig", period: "Period", untilFurther: "tills vidare",
    show: "Visa", hide: "Dölj", history: "Beslut", decidedEntry: "Beslutad", redecidedEntry: "Omprövad",
    reason: "Skäl", redecide: "Ompröva", redecideTitle: "Ompröva åtgärden", redecideReason: "Skäl till omprövningen (krävs)",
    redecideSend: "Spara omprövningen", redecided: "Omprövningen är sparad.", noChange: "Ändra minst ett fält.",
    effect: "Effekt", effectHint: "Punkternas värden före och efter åtgärdens start.",
    before: "före", after: "efter", startLine: "start", meanBefore: "Medel före", meanAfter: "medel efter",
    directions: { fell: "minskade", rose: "ökade", unchanged: "oförändrat", insufficient_data: "för lite data ännu" },
    fields: { title: "Rubrik", description: "Beskrivning", items: "Problem", responsible_actor: "Ansvarig",
      decided_by: "Beslutat av", start: "Startdatum", end: "Slutdatum", hours: "Timmar", money_sek: "Kronor", status: "Status" },
    fetching: (f) => `Hämtar: ${f} …`, empty: "inget", by: "av", hoursUnit: "timmar", sek: "kr", addressed: "Riktar sig mot",
  },
  en: {
    page: "Steering", compileTitle: "Compile a strategic analysis", kind: "Kind of period", periodChoice: "Period",
    kinds: { tertial: "Tertial", quarter: "Quarter", year: "Year" }, compile: "Compile the analysis",
    compiling: (p) => `Compiling the analysis of ${p} …`, compiled: (p) => `The analysis of ${p} is compiled.`,
    analyses: "Compiled analyses", choose: "Choose an analysis", noAnalysis: "No strategic analysis has been compiled yet.",
    revision: "version", at: "compiled", analysisTitle: "Strategic analysis", summary: "Summary",
    chartTitle: "Flagged periods per area", chartOf: (a, f, n) => `${a}: ${f} of ${n} periods flagged`,
    chartHint: "A period counts as flagged when at least one item was rising, high or new.",
    problems: "Persistent problems per area", noProblems: "No persistent problems.", ongoing: "ongoing",
    ended: (w) => `ended ${w}`, since: (w) => `since ${w}`, flagged: (k, n) => `flagged in ${k} of ${n} periods`,
    week: (n) => `week ${n}`, downloads: "Download", reportHtml: "The report (HTML)", reportPdf: "The report (PDF)",
    reportDocx: "The report (Word)", problemsCsv: "Persistent problems (CSV)", problemsXlsx: "Persistent problems (Excel)",
    measuresCsv: "Measures (CSV)", measuresXlsx: "Measures (Excel)",
    measures: "Measures", noMeasures: "No measures decided.", readOnly: "Measures are decided and re-decided by the steering group.",
    decideTitle: "Decide a measure", area: "Area", linked: "Problems the measure addresses",
    pickProblem: "Choose at least one problem.", noAreaProblems: "The area has no persistent problems in the analysis.",
    title: "Title", description: "Description", actor: "Responsible actor", decidedBy: "Decided by",
    decidedByDefault: "The steering group", start: "Start date", end: "End date (optional)", hours: "Hours",
    money: "SEK", status: "Status", decide: "Decide the measure", decided: "The measure is decided.",
    resources: "Resources", none: "none given", responsible: "Responsible", period: "Period", untilFurther: "until further notice",
    show: "Show", hide: "Hide", history: "Decisions", decidedEntry: "Decided", redecidedEntry: "Re-decided",
    reason: "Reason", redecide: "Re-decide", redecideTitle: "Re-decide the measure", redecideReason: "Reason for the re-decision (required)",
    redecideSend: "Save the re-decision", redecided: "The re-decision is saved.", noChange: "Change at least one field.",
    effect: "Effect", effectHint: "The items' values before and after the measure started.",
    before: "before", after: "after", startLine: "start", meanBefore: "Mean before", meanAfter: "mean after",
    directions: { fell: "decreased", rose: "increased", unchanged: "unchanged", insufficient_data: "too little data yet" },
    fields: { title: "Title", description: "Description", items: "Problems", responsible_actor: "Responsible",
      decided_by: "Decided by", start: "Start date", end: "End date", hours: "Hours", money_sek: "SEK", status: "Status" },
    fetching: (f) => `Fetching: ${f} …`, empty: "none", by: "by", hoursUnit: "hours", sek: "SEK", addressed: "Addresses",
  },
});

// ---------------------------------------------------------------------------------------------
// Periods and numbers in words
/** "Tertial 2 2026 (maj–aug)", "Kvartal 3 2026 (jul–sep)", "År 2026" */
export function periodWords(id) {
  const m = /^(\d{4})(?:-([TQ])([1-4]))?$/.exec(id || "");
  if (!m) return id || "";
  if (!m[2]) return `${tx("kinds").year} ${m[1]}`;
  const len = m[2] === "T" ? 4 : 3; const first = (Number(m[3]) - 1) * len; const mo = t("months");
  return `${tx("kinds")[m[2] === "T" ? "tertial" : "quarter"]} ${m[3]} ${m[1]} (${mo[first]}–${mo[first + len - 1]})`;
}
/** "vecka 20 (11–17 maj 2026)" */
function weekWords(id) {
  const w = /^(\d{4})-([WB])(\d{2})$/.exec(id || "");
  if (!w) return periodWords(id);
  const mon = mondayOf(id); const end = new Date(mon); end.setUTCDate(mon.getUTCDate() + (w[2] === "B" ? 13 : 6));
  const range = dateRange(mon, end);
  return `${tx("week")(Number(w[3]))} (${/\d{4}/.test(range) ? range : `${range} ${end.getUTCFullYear()}`})`;
}
const num = (v) => (v == null ? "–" : Number(v).toLocaleString(LANG === "sv" ? "sv-SE" : "en-GB", { maximumFractionDigits: 1 }));
const problemName = (p) => (LANG === "sv" ? p.label_sv : p.label_en) || p.label_sv || "";
const itemLabel = (m, code) => pick((m.item_labels || {})[code]) || code;

// the periods one may compile: the current one of each kind and the five before it
function periodChoices(kind, today = new Date()) {
  const y = today.getFullYear(), mo = today.getMonth();
  if (kind === "year") return [0, 1, 2, 3].map((k) => String(y - k));
  const len = kind === "tertial" ? 4 : 3, per = 12 / len, letter = kind === "tertial" ? "T" : "Q";
  let idx = y * per + Math.floor(mo / len); const out = [];
  for (let k = 0; k < 6; k++, idx--) out.push(`${Math.floor(idx / per)}-${letter}${(idx % per) + 1}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Charts (small inline SVG; the numbers are in the text too)
function flaggedPeriods(area) {
  const flagged = new Set();
  for (const tr of area.trends || []) for (const pt of tr.points || []) if (pt.flag) flagged.add(pt.period);
  return { flagged: flagged.size, total: (area.periods_begun || []).length };
}

function FlagChart({ areas }) {
  const rows = areas.map((a) => ({ name: a.area_name, ...flaggedPeriods(a) }));
  if (!rows.length) return "";
  const W = 560, bar = 22, gap = 10, left = 150, H = rows.length * (bar + gap) + 10;
  const max = Math.max(1, ...rows.map((r) => r.total));
  const width = (v) => ((W - left - 60) * v) / max;
  return html`<figure class="chart steering-chart" id="flag-chart">
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-label=${`${tx("chartTitle")}: ${rows.map((r) => tx("chartOf")(r.name, r.flagged, r.total)).join("; ")}`}>
      ${rows.map((r, i) => { const y = 5 + i * (bar + gap);
        return html`<g><text x=${left - 8} y=${y + bar / 2 + 4} text-anchor="end" font-size="13" fill="#1b1f24">${r.name}</text>
          <rect x=${left} y=${y} width=${width(r.total)} height=${bar} fill="#e5e7eb"/>
          <rect x=${left} y=${y} width=${width(r.flagged)} height=${bar} fill="#b3261e"/>
          <text x=${left + width(r.total) + 6} y=${y + bar / 2 + 4} font-size="13" fill="#1b1f24">${r.flagged}/${r.total}</text></g>`; })}
    </svg>
    <figcaption class="hint">${tx("chartHint")}</figcaption></figure>`;
}

function EffectChart({ item }) {
  const pts = item.points || [];
  if (!pts.length) return "";
  const W = 360, H = 120, P = 22;
  const max = Math.max(1, ...pts.map((p) => p.value));
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, pts.length - 1);
  const y = (v) => H - P - (v * (H - 2 * P)) / max;
  const firstAfter = pts.findIndex((p) => p.after);
  const startX = firstAfter <= 0 ? (firstAfter === 0 ? P : null) : (x(firstAfter - 1) + x(firstAfter)) / 2;
  const label = `${problemName(item)}: ${tx("meanBefore")} ${num(item.before_mean)}, ${tx("meanAfter")} ${num(item.after_mean)} (${tx("directions")[item.direction] || ""})`;
  return html`<svg class="effect-chart" viewBox="0 0 ${W} ${H}" role="img" aria-label=${label}>
    <line x1=${P} y1=${H - P} x2=${W - P} y2=${H - P} stroke="#94a3b8"/>
    ${startX != null && html`<line x1=${startX} y1=${6} x2=${startX} y2=${H - P} stroke="#1d4e89" stroke-dasharray="4 3"/>
      <text x=${startX + 4} y=${14} font-size="11" fill="#1d4e89">${tx("startLine")}</text>`}
    <polyline fill="none" stroke="#b3261e" stroke-width="2.5" points=${pts.map((p, i) => `${x(i)},${y(p.value)}`).join(" ")}/>
    ${pts.map((p, i) => html`<circle cx=${x(i)} cy=${y(p.value)} r="3" fill=${p.after ? "#1e7b34" : "#b3261e"}/>`)}
    <text x=${P} y=${H - 6} font-size="10" fill="#4a5461">${tx("before")}</text>
    <text x=${W - P} y=${H - 6} font-size="10" fill="#4a5461" text-anchor="end">${tx("after")}</text>
  </svg>`;
}

// ---------------------------------------------------------------------------------------------
// The page
export function Steering({ me }) {
  const muni = (me.municipalities || [])[0];
  const canDecide = (me.roles || []).some((r) => r === "styrgrupp" || r === "admin");
  const [analyses, setAnalyses] = useState([]); const [selected, setSelected] = useState("");
  const [analysis, setAnalysis] = useState(null); const [measures, setMeasures] = useState([]);
  const [actors, setActors] = useState([]); const [msg, setMsg] = useState(null); const [open, setOpen] = useState("");
  const loadAnalyses = () => api("analysis", `/v1/analyses?municipality_id=${encodeURIComponent(muni)}`).then((list) => {
    setAnalyses(list || []); return list || [];
  });
  const loadMeasures = () => api("analysis", `/v1/measures?municipality_id=${encodeURIComponent(muni)}`)
    .then((m) => setMeasures(m || [])).catch(() => setMeasures([]));
  useEffect(() => {
    if (!muni) return;
    loadAnalyses().then((list) => { if (list[0]) setSelected(list[0].id); }).catch((e) => setMsg({ kind: "bad", text: pick(e.message) }));
    loadMeasures();
    api("analysis", `/v1/actors?municipality_id=${encodeURIComponent(muni)}`).then((a) => setActors(a || [])).catch(() => setActors([]));
  }, [muni]);
  useEffect(() => {
    if (!selected) { setAnalysis(null); return; }
    api("analysis", `/v1/analyses/${encodeURIComponent(selected)}`).then(setAnalysis).catch((e) => setMsg({ kind: "bad", text: pick(e.message) }));
  }, [selected]);
  const compiled = (body) => { loadAnalyses().catch(() => {}); setSelected(body.id); setAnalysis(body); };
  // a message of the page's own is kept as its text's key, so it follows a change of language
  const measureSaved = (m, key) => { setMsg({ kind: "ok", key }); setOpen(m.id); loadMeasures(); };
  return html`<main id="main" class="steering">
    <h2 class="sr">${tx("page")}</h2>
    <${Compile} muni=${muni} onCompiled=${compiled}/>
    ${analyses.length > 0 && html`<section class="card" aria-labelledby="analyses-title"><h2 id="analyses-title">${tx("analyses")}</h2>
      <label for="analysis-choice">${tx("choose")}</label>
      <select id="analysis-choice" value=${selected} onChange=${(e) => setSelected(e.target.value)}>
        ${analyses.map((a) => html`<option value=${a.id}>${periodWords(a.period)} · ${tx("revision")} ${a.revision} · ${tx("at")} ${dateText(a.compiled_at)}</option>`)}
      </select></section>`}
    ${analysis ? html`<${Analysis} analysis=${analysis} muni=${muni}/>` : html`<p class="hint">${tx("noAnalysis")}</p>`}
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.key ? tx(msg.key) : msg.text}<//>`}
    ${canDecide && analysis && html`<${DecideForm} analysis=${analysis} actors=${actors} onSaved=${(m) => measureSaved(m, "decided")}/>`}
    <${Measures} measures=${measures} actors=${actors} canDecide=${canDecide} analysis=${analysis} open=${open} setOpen=${setOpen}
      onSaved=${(m) => measureSaved(m, "redecided")}/>
  </main>`;
}

function Compile({ muni, onCompiled }) {
  const [kind, setKind] = useState("tertial");
  const choices = periodChoices(kind);
  const [period, setPeriod] = useState(choices[1]);
  const [busy, setBusy] = useState(false); const [msg, setMsg] = useState(null);
  const chooseKind = (k) => { setKind(k); setPeriod(periodChoices(k)[1]); };
  const run = async (ev) => {
    ev.preventDefault(); setBusy(true); setMsg(null);
    try {
      const body = await api("analysis", "/v1/analyses", { method: "POST", body: { municipality_id: muni, period } });
      setMsg({ kind: "ok", done: period }); onCompiled(body);
    } catch (e) { setMsg({ kind: "bad", text: pick(e.message) }); } finally { setBusy(false); }
  };
  return html`<section class="card" aria-labelledby="compile-title" aria-busy=${busy ? "true" : "false"}>
    <h2 id="compile-title">${tx("compileTitle")}</h2>
    <form class="row" onSubmit=${run}>
      <div><label for="compile-kind">${tx("kind")}</label>
        <select id="compile-kind" value=${kind} onChange=${(e) => chooseKind(e.target.value)} disabled=${busy}>
          ${["tertial", "quarter", "year"].map((k) => html`<option value=${k}>${tx("kinds")[k]}</option>`)}</select></div>
      <div><label for="compile-period">${tx("periodChoice")}</label>
        <select id="compile-period" value=${period} onChange=${(e) => setPeriod(e.target.value)} disabled=${busy}>
          ${choices.map((p) => html`<option value=${p}>${periodWords(p)}</option>`)}</select></div>
      <div class="steering-go"><button class="primary" type="submit" id="compile" disabled=${busy}>${tx("compile")}</button></div>
    </form>
    ${busy && html`<div id="compile-busy" role="status"><progress class="steering-progress" aria-label=${tx("compiling")(periodWords(period))}></progress>
      <p>${tx("compiling")(periodWords(period))}</p></div>`}
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.done ? tx("compiled")(periodWords(msg.done)) : msg.text}<//>`}
  </section>`;
}

function Analysis({ analysis, muni }) {
  const [err, setErr] = useState(""); const [fetching, setFetching] = useState("");
  const id = analysis.id; const safe = id.replace(/[^A-Za-z0-9-]+/g, "-");
  // a PDF or Word report takes a while to make: the buttons wait and say so meanwhile
  const save = (path, name, what) => { setFetching(what); setErr("");
    return saveFile("analysis", path, name).then(() => setErr(""), (e) => setErr(pick(e.message))).finally(() => setFetching("")); };
  const report = (kind) => save(`/v1/analyses/${encodeURIComponent(id)}/report.${kind}?lang=${LANG}`, `analys-${safe}-${LANG}.${kind}`,
    { html: "reportHtml", pdf: "reportPdf", docx: "reportDocx" }[kind]);
  const problems = (fmt) => save(`/v1/analyses/${encodeURIComponent(id)}?format=${fmt}&lang=${LANG}`, `bestaende-problem-${safe}.${fmt}`,
    fmt === "csv" ? "problemsCsv" : "problemsXlsx");
  const measures = (fmt) => save(`/v1/measures?municipality_id=${encodeURIComponent(muni)}&format=${fmt}&lang=${LANG}`, `atgarder-${muni}.${fmt}`,
    fmt === "csv" ? "measuresCsv" : "measuresXlsx");
  const areas = analysis.areas || [];
  return html`<section class="card" aria-labelledby="analysis-title">
    <h2 id="analysis-title">${tx("analysisTitle")} · ${analysis.municipality_name} · ${periodWords(analysis.period)}</h2>
    <h3>${tx("summary")}</h3><p id="summary">${pick(analysis.summary)}</p>
    <h3>${tx("chartTitle")}</h3><${FlagChart} areas=${areas}/>
    <h3>${tx("problems")}</h3>
    <div id="problems">${areas.map((a) => html`<section class="steering-area" data-area=${a.area_id} aria-label=${a.area_name}>
      <h4>${a.area_name}</h4>
      ${(a.persistent_problems || []).length ? html`<ul class="plain">${a.persistent_problems.map((p) => html`<li data-item=${p.item}>
          <strong>${problemName(p)}</strong>${" "}<span class=${"badge " + (p.ongoing ? "bad" : "ok")}>${p.ongoing ? tx("ongoing") : tx("ended")(weekWords(p.held_at[p.held_at.length - 1]))}</span>
          <br/><span class="hint">${tx("since")(weekWords(p.held_at[0]))} · ${tx("flagged")(p.max_flagged, p.n)}</span></li>`)}</ul>`
        : html`<p class="hint">${tx("noProblems")}</p>`}</section>`)}</div>
    <h3>${tx("downloads")}</h3>
    <p class="steering-downloads" aria-busy=${fetching ? "true" : "false"}>
      <button class="secondary" id="dl-html" disabled=${!!fetching} onClick=${() => report("html")}>${tx("reportHtml")}</button>
      <button class="secondary" id="dl-pdf" disabled=${!!fetching} onClick=${() => report("pdf")}>${tx("reportPdf")}</button>
      <button class="secondary" id="dl-docx" disabled=${!!fetching} onClick=${() => report("docx")}>${tx("reportDocx")}</button>
      <button class="secondary" id="dl-problems-csv" disabled=${!!fetching} onClick=${() => problems("csv")}>${tx("problemsCsv")}</button>
      <button class="secondary" id="dl-problems-xlsx" disabled=${!!fetching} onClick=${() => problems("xlsx")}>${tx("problemsXlsx")}</button>
      <button class="secondary" id="dl-measures-csv" disabled=${!!fetching} onClick=${() => measures("csv")}>${tx("measuresCsv")}</button>
      <button class="secondary" id="dl-measures-xlsx" disabled=${!!fetching} onClick=${() => measures("xlsx")}>${tx("measuresXlsx")}</button></p>
    ${fetching && html`<p class="hint" role="status" id="dl-busy">${tx("fetching")(tx(fetching))}</p>`}
    ${err && html`<${Msg} kind="bad">${err}<//>`}
  </section>`;
}

const today = () => new Date().toISOString().slice(0, 10);
const STATUSES = ["planned", "active", "completed", "cancelled"];

function DecideForm({ analysis, actors, onSaved }) {
  const areas = [...(analysis.areas || [])].sort((a, b) => (b.persistent_problems || []).length - (a.persistent_problems || []).length);
  const [area, setArea] = useState((areas[0] || {}).area_id || "");
  const [items, setItems] = useState([]);
  const blank = () => ({ title: "", description: "", actor: "", decided_by: tx("decidedByDefault"), start: today(), end: "", hours: "", money: "", status: "planned" });
  const [f, setF] = useState(blank);
  const [msg, setMsg] = useState(null);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const problems = ((areas.find((a) => a.area_id === area) || {}).persistent_problems) || [];
  const toggle = (code) => setItems(items.includes(code) ? items.filter((i) => i !== code) : [...items, code]);
  const submit = async (ev) => {
    ev.preventDefault();
    if (!items.length) { setMsg({ kind: "bad", text: tx("pickProblem") }); return; }
    const body = { title: f.title, description: f.description, area_id: area, items, responsible_actor: f.actor || (actors[0] || {}).id,
      decided_by: f.decided_by, start: f.start, status: f.status, ...(f.end ? { end: f.end } : {}),
      resources: { ...(f.hours !== "" ? { hours: Number(f.hours) } : {}), ...(f.money !== "" ? { money_sek: Number(f.money) } : {}) } };
    try { const m = await api("analysis", "/v1/measures", { method: "POST", body }); setMsg(null); setItems([]); setF(blank()); onSaved(m); }
    catch (e) { setMsg({ kind: "bad", text: pick(e.message) }); }
  };
  return html`<section class="card" aria-labelledby="decide-title"><h2 id="decide-title">${tx("decideTitle")}</h2>
    <form id="measure-form" onSubmit=${submit}>
      <label for="m-area">${tx("area")}</label>
      <select id="m-area" value=${area} onChange=${(e) => { setArea(e.target.value); setItems([]); }}>
        ${areas.map((a) => html`<option value=${a.area_id}>${a.area_name}</option>`)}</select>
      <fieldset class="steering-problems"><legend>${tx("linked")}</legend>
        ${problems.length ? problems.map((p) => html`<label class="steering-check"><input type="checkbox" name="m-problem" value=${p.item}
            checked=${items.includes(p.item)} onChange=${() => toggle(p.item)}/> ${problemName(p)} <span class="hint">· ${tx("since")(weekWords(p.held_at[0]))}</span></label>`)
          : html`<p class="hint">${tx("noAreaProblems")}</p>`}</fieldset>
      <label for="m-title">${tx("title")}</label><input type="text" id="m-title" required maxlength="300" value=${f.title} onInput=${set("title")}/>
      <label for="m-desc">${tx("description")}</label><textarea id="m-desc" maxlength="4000" value=${f.description} onInput=${set("description")}></textarea>
      <div class="row">
        <div><label for="m-actor">${tx("actor")}</label><select id="m-actor" value=${f.actor || (actors[0] || {}).id} onChange=${set("actor")}>
          ${actors.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</select></div>
        <div><label for="m-decided-by">${tx("decidedBy")}</label><input type="text" id="m-decided-by" required maxlength="200" value=${f.decided_by} onInput=${set("decided_by")}/></div>
      </div>
      <div class="row">
        <div><label for="m-start">${tx("start")}</label><input type="date" id="m-start" required value=${f.start} onInput=${set("start")}/></div>
        <div><label for="m-end">${tx("end")}</label><input type="date" id="m-end" value=${f.end} min=${f.start} onInput=${set("end")}/></div>
        <div><label for="m-status">${tx("status")}</label><select id="m-status" value=${f.status} onChange=${set("status")}>
          ${STATUSES.map((s) => html`<option value=${s}>${coded("measureStatus", s)}</option>`)}</select></div>
      </div>
      <fieldset class="steering-resources"><legend>${tx("resources")}</legend><div class="row">
        <div><label for="m-hours">${tx("hours")}</label><input type="number" id="m-hours" min="0" step="any" value=${f.hours} onInput=${set("hours")}/></div>
        <div><label for="m-money">${tx("money")}</label><input type="number" id="m-money" min="0" step="any" value=${f.money} onInput=${set("money")}/></div>
      </div></fieldset>
      <p><button class="primary" type="submit" id="m-submit">${tx("decide")}</button></p>
      ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    </form></section>`;
}

function Measures({ measures, actors, canDecide, analysis, open, setOpen, onSaved }) {
  return html`<section class="card" aria-labelledby="measures-title"><h2 id="measures-title">${tx("measures")}</h2>
    ${!canDecide && html`<p class="hint" id="read-only">${tx("readOnly")}</p>`}
    ${measures.length ? html`<ul class="plain" id="measures">${measures.map((m) => html`<li data-measure=${m.id}>
        <div class="steering-measure-head"><strong>${m.title}</strong> · ${m.area_name} · <span class="badge info">${coded("measureStatus", m.status)}</span>
          <button class="secondary steering-toggle" aria-expanded=${open === m.id ? "true" : "false"} aria-controls=${open === m.id ? `measure-${m.id}` : undefined}
            onClick=${() => setOpen(open === m.id ? "" : m.id)}>${open === m.id ? tx("hide") : tx("show")}<span class="sr"> ${m.title}</span></button></div>
        ${open === m.id && html`<${MeasureDetail} key=${m.id + m.revision} measure=${m} actors=${actors} canDecide=${canDecide}
          problems=${(((analysis && analysis.areas) || []).find((a) => a.area_id === m.area_id) || {}).persistent_problems || []} onSaved=${onSaved}/>`}</li>`)}</ul>`
      : html`<p class="hint">${tx("noMeasures")}</p>`}
  </section>`;
}

function changeValue(m, actors, field, v) {
  if (v == null || v === "" || (Array.isArray(v) && !v.length)) return tx("empty");
  if (field === "status") return coded("measureStatus", v);
  if (field === "start" || field === "end") return dateText(v);
  if (field === "responsible_actor") return ((actors.find((a) => a.id === v) || {}).name) || (m.actor_names || {})[v] || m.responsible_actor_name;
  if (field === "items") return v.map((c) => itemLabel(m, c)).join(", ");
  return String(v);
}

function MeasureDetail({ measure: m, actors, canDecide, problems, onSaved }) {
  const [effect, setEffect] = useState(null);
  useEffect(() => { api("analysis", `/v1/measures/${encodeURIComponent(m.id)}/effect`).then(setEffect).catch(() => setEffect(null)); }, [m.id, m.revision]);
  const res = m.resources || {};
  const resources = [res.hours != null ? `${num(res.hours)} ${tx("hoursUnit")}` : "", res.money_sek != null ? `${num(res.money_sek)} ${tx("sek")}` : ""].filter(Boolean).join(", ") || tx("none");
  return html`<div class="steering-detail" id=${`measure-${m.id}`}>
    <dl class="steering-facts">
      <dt>${tx("addressed")}</dt><dd id="measure-items">${m.items.map((c) => itemLabel(m, c)).join(", ")}</dd>
      <dt>${tx("responsible")}</dt><dd>${m.responsible_actor_name}</dd>
      <dt>${tx("period")}</dt><dd>${dateText(m.start)} – ${m.end ? dateText(m.end) : tx("untilFurther")}</dd>
      <dt>${tx("resources")}</dt><dd>${resources}</dd>
      ${m.description && html`<dt>${tx("description")}</dt><dd>${m.description}</dd>`}
    </dl>
    <h3>${tx("history")}</h3>
    <ol class="steering-history" id="history">${(m.history || []).map((h) => html`<li>
      <strong>${h.action === "decided" ? tx("decidedEntry") : tx("redecidedEntry")}</strong> ${dateText(h.at)} ${tx("by")} ${h.by_name || ""}
      ${Object.keys(h.changes || {}).length > 0 && html`<ul>${Object.entries(h.changes).map(([k, c]) => html`<li>${(tx("fields")[k]) || k}: ${changeValue(m, actors, k, c.from)} → ${changeValue(m, actors, k, c.to)}</li>`)}</ul>`}
      ${h.reason && html`<div>${tx("reason")}: ${h.reason}</div>`}</li>`)}</ol>
    <h3>${tx("effect")}</h3><p class="hint">${tx("effectHint")}</p>
    <div id="effect" class="steering-effects">${effect ? effect.items.map((it) => html`<figure class="steering-effect" data-item=${it.item}>
        <figcaption><strong>${problemName(it)}</strong>: ${it.direction === "insufficient_data" ? tx("directions").insufficient_data
          : html`${tx("meanBefore")} ${num(it.before_mean)}, ${tx("meanAfter")} ${num(it.after_mean)} (${tx("directions")[it.direction]})`}</figcaption>
        <${EffectChart} item=${it}/></figure>`) : "…"}</div>
    ${canDecide && html`<${Redecide} measure=${m} actors=${actors} problems=${problems} onSaved=${onSaved}/>`}
  </div>`;
}

// The fields a re-decision may change, as the form holds them (resources as the number inputs' texts)
const formOf = (m) => ({ title: m.title, description: m.description || "", items: [...m.items], actor: m.responsible_actor,
  status: m.status, end: m.end || "", hours: (m.resources || {}).hours ?? "", money: (m.resources || {}).money_sek ?? "", reason: "" });
const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

// What a re-decision changes: only the fields that differ from the measure go in the PATCH, with the reason
function redecision(m, f) {
  const body = { reason: f.reason }; const was = formOf(m);
  if (f.title.trim() !== m.title) body.title = f.title.trim();
  if (f.description !== was.description) body.description = f.description;
  if (!sameSet(f.items, m.items)) body.items = f.items;
  if (f.actor !== m.responsible_actor) body.responsible_actor = f.actor;
  if (f.status !== m.status) body.status = f.status;
  if ((f.end || null) !== (m.end || null)) body.end = f.end || null;
  if (String(f.hours) !== String(was.hours) || String(f.money) !== String(was.money))
    body.resources = { ...(f.hours !== "" ? { hours: Number(f.hours) } : {}), ...(f.money !== "" ? { money_sek: Number(f.money) } : {}) };
  return body;
}

function Redecide({ measure: m, actors, problems, onSaved }) {
  const [f, setF] = useState(() => formOf(m)); const [msg, setMsg] = useState(null);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  // the items one may choose: the area's persistent problems in the analysis shown, and what the measure addresses now
  const choices = [...problems.map((p) => ({ code: p.item, name: problemName(p) })),
    ...m.items.filter((c) => !problems.some((p) => p.item === c)).map((c) => ({ code: c, name: itemLabel(m, c) }))];
  const toggle = (code) => setF({ ...f, items: f.items.includes(code) ? f.items.filter((i) => i !== code) : [...f.items, code] });
  const submit = async (ev) => {
    ev.preventDefault();
    if (!f.items.length) { setMsg({ kind: "bad", text: tx("pickProblem") }); return; }
    const body = redecision(m, f);
    if (Object.keys(body).length === 1) { setMsg({ kind: "bad", text: tx("noChange") }); return; }
    try { const saved = await api("analysis", `/v1/measures/${encodeURIComponent(m.id)}`, { method: "PATCH", body }); setMsg(null); onSaved(saved); }
    catch (e) { setMsg({ kind: "bad", text: pick(e.message) }); }
  };
  const known = actors.some((a) => a.id === m.responsible_actor);
  return html`<form class="steering-redecide" id="redecide-form" onSubmit=${submit} aria-labelledby="redecide-title">
    <h3 id="redecide-title">${tx("redecideTitle")}</h3>
    <label for="redecide-title-input">${tx("title")}</label>
    <input type="text" id="redecide-title-input" required maxlength="300" value=${f.title} onInput=${set("title")}/>
    <label for="redecide-desc">${tx("description")}</label>
    <textarea id="redecide-desc" maxlength="4000" value=${f.description} onInput=${set("description")}></textarea>
    <fieldset class="steering-problems" id="redecide-items"><legend>${tx("linked")}</legend>
      ${choices.map((c) => html`<label class="steering-check"><input type="checkbox" name="redecide-item" value=${c.code}
        checked=${f.items.includes(c.code)} onChange=${() => toggle(c.code)}/> ${c.name}</label>`)}</fieldset>
    <div class="row">
      <div><label for="redecide-actor">${tx("actor")}</label><select id="redecide-actor" value=${f.actor} onChange=${set("actor")}>
        ${!known && html`<option value=${m.responsible_actor}>${m.responsible_actor_name}</option>`}
        ${actors.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</select></div>
      <div><label for="redecide-status">${tx("status")}</label><select id="redecide-status" value=${f.status} onChange=${set("status")}>
        ${STATUSES.map((s) => html`<option value=${s}>${coded("measureStatus", s)}</option>`)}</select></div>
      <div><label for="redecide-end">${tx("fields").end}</label><input type="date" id="redecide-end" value=${f.end} min=${m.start} onInput=${set("end")}/></div>
    </div>
    <fieldset class="steering-resources"><legend>${tx("resources")}</legend><div class="row">
      <div><label for="redecide-hours">${tx("hours")}</label><input type="number" id="redecide-hours" min="0" step="any" value=${f.hours} onInput=${set("hours")}/></div>
      <div><label for="redecide-money">${tx("money")}</label><input type="number" id="redecide-money" min="0" step="any" value=${f.money} onInput=${set("money")}/></div>
    </div></fieldset>
    <label for="redecide-reason">${tx("redecideReason")}</label>
    <textarea id="redecide-reason" required maxlength="2000" value=${f.reason} onInput=${set("reason")}></textarea>
    <p><button class="primary" type="submit" id="redecide-submit">${tx("redecideSend")}</button></p>
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
  </form>`;
}

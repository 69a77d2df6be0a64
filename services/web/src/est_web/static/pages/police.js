// The police officer's page: the Kronoberg forfeiture protocol form, the municipality's exact Kronoberg figures
// per period (with downloads), and reading one protocol with a stated purpose (every read is logged).
import { html, useState, useEffect, LANG, api, saveFile, periodText, dateText, shiftWeek, pick, Msg } from "../core.js";

const T = {
  sv: {
    title: "Förverkandeprotokoll", person: "Den unga personen", name: "Namn", pnr: "Personnummer",
    pnrHint: "ÅÅÅÅMMDD-NNNN", items: "Drycker", beverage: "Dryck", litres: "Volym (liter)", containers: "Antal förpackningar",
    addItem: "Lägg till dryck", removeItem: "Ta bort drycken", area: "Område", place: "Plats", when: "Tidpunkt",
    guardianContacted: "Vårdnadshavare kontaktad", guardianCame: "Vårdnadshavare kom och hämtade",
    direct: "Hälldes ut på plats", source: "Varifrån kom alkoholen?", socialNotified: "Socialtjänsten är underrättad",
    notifySocial: "Underrätta socialtjänsten via EST även för 18–19-åringar", unit: "Enhet",
    send: "Registrera protokollet", sending: "Skickar…", accepted: "Protokollet är registrerat.",
    offline: "Du är offline. Utkastet finns kvar på enheten och skickas när nätet kommer tillbaka.",
    queued: "Protokollet väntar på nätet och skickas automatiskt.",
    refused: "Protokollet registrerades inte. Ändra det som är markerat – allt du skrivit finns kvar.",
    fix: "Ändra här", badAnswer: "Värdet kunde inte tas emot.", pii: "Personuppgifter lagras krypterat; utkastet raderas från enheten när protokollet tagits emot.",
    figures: "Kronobergsmodellen i siffror", period: "Period", prev: "Föregående", next: "Nästa",
    show: "Visa", kinds: { week: "En vecka", weeks: "Flera veckor", tertial: "Ett tertial" }, fromWeek: "Från vecka", toWeek: "Till och med vecka",
    tertialChoice: "Tertial", covers: (a, b, n) => `${a} – ${b}, ${n} ${n === 1 ? "vecka" : "veckor"}`,
    whole: "Hela kommunen", interventions: "Ingripanden", under18: "Under 18 år", gContacted: "Vårdnadshavare kontaktad",
    gCame: "Vårdnadshavare kom", litresTotal: "Liter totalt", perBeverage: "Liter per dryck", noFigures: "Inga protokoll den här perioden.",
    csv: "Ladda ner CSV", xlsx: "Ladda ner Excel (XLSX)", perArea: "Per område", outside: "Utanför områdena",
    read: "Läs ett protokoll", protocolId: "Protokollets id", purpose: "Syfte med läsningen", logged: "Varje läsning loggas med ditt namn, tid och syfte.",
    readBtn: "Läs protokollet", needPurpose: "Ange varför du läser protokollet.", age: "Ålder", occurred: "Inträffade",
    yes: "ja", no: "nej", warnings: "Påminnelser", lastId: "Senast registrerade protokoll",
    beverages: { "starköl": "Starköl", "folköl": "Folköl", cider_alkolask: "Cider/alkoläsk", vin: "Vin", sprit: "Sprit", hembrant: "Hembränt", other: "Annat" },
    sources: { unknown: "Okänt eller vill inte uppge", home: "Tagit hemifrån", parent: "Fått av förälder", sibling: "Fått av syskon",
      friend: "Fått av kompis", adult_supplier: "Langat av vuxen", systembolaget: "Köpt på Systembolaget", store: "Köpt i butik",
      restaurant: "Köpt på krog", internet: "Köpt på nätet", stolen: "Stulet", other: "Annat" },
    fields: { "person.name": "Namn", "person.personal_number": "Personnummer", place: "Plats", occurred_at: "Tidpunkt",
      area_id: "Område", guardian_came: "Vårdnadshavare kom", items: "Drycker", municipality_id: "Kommun", source: "Källa", unit: "Enhet" },
  },
  en: {
    title: "Forfeiture protocol", person: "The young person", name: "Name", pnr: "Personal identity number",
    pnrHint: "YYYYMMDD-NNNN", items: "Beverages", beverage: "Beverage", litres: "Volume (litres)", containers: "Number of containers",
    addItem: "Add a beverage", removeItem: "Remove the beverage", area: "Area", place: "Place", when: "Time",
    guardianContacted: "Guardian contacted", guardianCame: "Guardian came to fetch them",
    direct: "Poured out on the spot", source: "Where did the alcohol come from?", socialNotified: "Social services have been told",
    notifySocial: "Notify social services through EST also for 18–19-year-olds", unit: "Unit",
    send: "Record the protocol", sending: "Sending…", accepted: "The protocol is recorded.",
    offline: "You are offline. The draft stays on this device and is sent when the network returns.",
    queued: "The protocol is waiting for the network and will be sent automatically.",
    refused: "The protocol was not recorded. Change what is marked – everything you typed is kept.",
    fix: "Change this", badAnswer: "The value could not be accepted.", pii: "Personal data is stored encrypted; the draft is removed from this device once the protocol is accepted.",
    figures: "The Kronoberg model in figures", period: "Period", prev: "Previous", next: "Next",
    show: "Show", kinds: { week: "One week", weeks: "Several weeks", tertial: "A tertial" }, fromWeek: "From week", toWeek: "To week (inclusive)",
    tertialChoice: "Tertial", covers: (a, b, n) => `${a} – ${b}, ${n} ${n === 1 ? "week" : "weeks"}`,
    whole: "The whole municipality", interventions: "Interventions", under18: "Under 18", gContacted: "Guardian contacted",
    gCame: "Guardian came", litresTotal: "Litres in all", perBeverage: "Litres per beverage", noFigures: "No protocols this period.",
    csv: "Download CSV", xlsx: "Download Excel (XLSX)", perArea: "Per area", outside: "Outside the areas",
    read: "Read a protocol", protocolId: "The protocol's id", purpose: "Purpose of reading", logged: "Every read is logged with your name, the time and the purpose.",
    readBtn: "Read the protocol", needPurpose: "State why you read the protocol.", age: "Age", occurred: "Occurred",
    yes: "yes", no: "no", warnings: "Reminders", lastId: "Last recorded protocol",
    beverages: { "starköl": "Strong beer", "folköl": "Light beer", cider_alkolask: "Cider/alcopop", vin: "Wine", sprit: "Spirits", hembrant: "Home-distilled", other: "Other" },
    sources: { unknown: "Unknown or not stated", home: "Taken from home", parent: "Given by a parent", sibling: "Given by a sibling",
      friend: "Given by a friend", adult_supplier: "Supplied by an adult", systembolaget: "Bought at Systembolaget", store: "Bought in a shop",
      restaurant: "Bought at a bar or restaurant", internet: "Bought online", stolen: "Stolen", other: "Other" },
    fields: { "person.name": "Name", "person.personal_number": "Personal identity number", place: "Place", occurred_at: "Time",
      area_id: "Area", guardian_came: "Guardian came", items: "Beverages", municipality_id: "Municipality", source: "Source", unit: "Unit" },
  },
};
const tt = (k) => T[LANG][k] ?? T.sv[k] ?? k;
const word = (group, code) => (T[LANG][group] || {})[code] || code;

// ---------------------------------------------------------------------------------------------
// The draft: kept on the device (it holds personal data) only until the intake accepted it
const DRAFT = "est.police.draft";
const localNow = () => { const d = new Date(); d.setSeconds(0, 0); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); };
function newDraft(area) {
  return { protocol_id: crypto.randomUUID(), area_id: area ? area.id : "", place: "", when: localNow(), unit: "",
    name: "", pnr: "", items: [{ beverage: "starköl", volume_liters: "", containers: "" }], direct_forfeiture: false,
    guardian_contacted: false, guardian_came: false, source: "unknown", social_services_notified: false,
    notify_social_services: false, state: "draft" };
}
const loadDraft = (area) => { const d = localStorage.getItem(DRAFT); return d ? JSON.parse(d) : newDraft(area); };
const forget = () => localStorage.removeItem(DRAFT);

function protocolOf(d, areas) {
  const area = areas.find((a) => a.id === d.area_id);
  return { protocol_id: d.protocol_id, municipality_id: area ? area.municipality_id : "", area_id: d.area_id || null,
    place: d.place, occurred_at: d.when ? new Date(d.when).toISOString() : "", unit: d.unit || null,
    person: { name: d.name, personal_number: d.pnr },
    items: d.items.map((i) => ({ beverage: i.beverage, volume_liters: Number(String(i.volume_liters).replace(",", ".")) || 0,
      containers: parseInt(i.containers, 10) || 0 })),
    direct_forfeiture: d.direct_forfeiture, guardian_contacted: d.guardian_contacted, guardian_came: d.guardian_came,
    source: d.source, social_services_notified: d.social_services_notified, notify_social_services: d.notify_social_services };
}

// The intake's 422 answer as messages per field ("person.name", "items.0.volume_liters", "form")
function errorsByField(problem) {
  const out = {};
  for (const e of (problem && problem.errors) || []) {
    const field = String(e.field || "").replace(/^body\./, "") || "form";
    const text = (LANG === "sv" ? e.message_sv : e.message_en) || pick(e.message) || tt("badAnswer");
    out[field] = out[field] ? `${out[field]} ${text}` : text;
  }
  if (!Object.keys(out).length) out.form = pick(problem && (problem.detail || problem.title)) || tt("badAnswer");
  return out;
}
const fieldName = (f) => { const m = /^items\.(\d+)\.(\w+)$/.exec(f);
  if (m) return `${tt("items")} ${Number(m[1]) + 1}: ${tt(m[2] === "volume_liters" ? "litres" : m[2] === "containers" ? "containers" : "beverage")}`;
  return (T[LANG].fields || {})[f] || ""; };

let sendingDraft = null;
/** Send the kept draft if it waits for the network (called on load and when the network returns). */
export async function flushProtocol(areas, onDone) {
  const d = JSON.parse(localStorage.getItem(DRAFT) || "null");
  if (!d || d.state !== "queued" || sendingDraft) return;
  sendingDraft = api("intake", "/v1/forfeitures", { method: "POST", body: protocolOf(d, areas) })
    .then((answer) => { forget(); onDone({ answer }); })
    .catch((e) => { if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) {
      localStorage.setItem(DRAFT, JSON.stringify({ ...d, state: "draft" })); onDone({ problem: e.data || { detail: e.message } }); } })
    .finally(() => { sendingDraft = null; });
}

function Field({ id, label, error, children, hint }) {
  return html`<div class="field"><label for=${id}>${label}</label>${hint && html`<span class="hint" id=${id + "-hint"}>${hint}</span>`}${children}
    ${error && html`<p class="field-error" id=${id + "-error"}>${tt("fix")}: ${error}</p>`}</div>`;
}
const aria = (id, error) => ({ "aria-invalid": error ? "true" : undefined, "aria-describedby": error ? id + "-error" : undefined });

function ProtocolForm({ areas, online, onRecorded }) {
  const [d, setD] = useState(() => loadDraft(areas[0]));
  const [problem, setProblem] = useState(null); const [msg, setMsg] = useState(null); const [busy, setBusy] = useState(false);
  useEffect(() => { localStorage.setItem(DRAFT, JSON.stringify(d)); }, [d]);
  const done = ({ answer, problem: p }) => {
    if (answer) { const fresh = newDraft(areas.find((a) => a.id === d.area_id) || areas[0]); forget(); setD(fresh); setProblem(null);
      setMsg({ kind: "ok", text: tt("accepted"), answer }); onRecorded(answer); }
    else { setD((x) => ({ ...x, state: "draft" })); setProblem(p); setMsg(null); }
  };
  useEffect(() => { if (online && d.state === "queued") flushProtocol(areas, done); }, [online]);
  useEffect(() => { if (problem) { const bad = document.querySelector("#protocol-form [aria-invalid=true]"); if (bad) bad.focus(); } }, [problem]);
  const errors = problem ? errorsByField(problem) : {};
  const set = (k, v) => setD((x) => ({ ...x, [k]: v }));
  const setItem = (i, k, v) => setD((x) => ({ ...x, items: x.items.map((it, j) => (j === i ? { ...it, [k]: v } : it)) }));
  const area = areas.find((a) => a.id === d.area_id);
  const submit = async (ev) => {
    ev.preventDefault(); if (busy) return;
    const queued = { ...d, state: "queued" }; localStorage.setItem(DRAFT, JSON.stringify(queued)); setD(queued);
    setBusy(true); setMsg({ kind: "info", text: tt("sending") });
    try {
      const answer = await api("intake", "/v1/forfeitures", { method: "POST", body: protocolOf(queued, areas) });
      done({ answer });
    } catch (e) {
      if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) done({ problem: e.data || { detail: e.message } });
      else setMsg({ kind: "info", text: tt("queued") });  // kept on the device, sent when the network returns
    } finally { setBusy(false); }
  };
  const keys = Object.keys(errors);
  return html`<form class="card" id="protocol-form" onSubmit=${submit} aria-labelledby="protocol-title" novalidate>
    <h2 id="protocol-title">${tt("title")}</h2>
    ${!online && html`<${Msg} kind="info">${tt("offline")}<//>`}
    <p class="hint">${tt("pii")}</p>
    <fieldset><legend>${tt("person")}</legend>
      <${Field} id="p-name" label=${tt("name")} error=${errors["person.name"]}>
        <input id="p-name" autocomplete="off" maxlength="200" value=${d.name} onInput=${(e) => set("name", e.target.value)} ...${aria("p-name", errors["person.name"])}/><//>
      <${Field} id="p-pnr" label=${tt("pnr")} hint=${tt("pnrHint")} error=${errors["person.personal_number"]}>
        <input id="p-pnr" autocomplete="off" inputmode="numeric" maxlength="13" value=${d.pnr} onInput=${(e) => set("pnr", e.target.value)} ...${aria("p-pnr", errors["person.personal_number"])}/><//>
    </fieldset>
    <fieldset><legend>${tt("items")}</legend>
      ${d.items.map((it, i) => html`<div class="bev-row" role="group" aria-label=${`${tt("items")} ${i + 1}`}>
        <${Field} id=${`b-${i}`} label=${tt("beverage")} error=${errors[`items.${i}.beverage`]}>
          <select id=${`b-${i}`} value=${it.beverage} onChange=${(e) => setItem(i, "beverage", e.target.value)}>
            ${Object.keys(T.sv.beverages).map((b) => html`<option value=${b}>${word("beverages", b)}</option>`)}</select><//>
        <${Field} id=${`v-${i}`} label=${tt("litres")} error=${errors[`items.${i}.volume_liters`]}>
          <input id=${`v-${i}`} inputmode="decimal" value=${it.volume_liters} onInput=${(e) => setItem(i, "volume_liters", e.target.value)} ...${aria(`v-${i}`, errors[`items.${i}.volume_liters`])}/><//>
        <${Field} id=${`c-${i}`} label=${tt("containers")} error=${errors[`items.${i}.containers`]}>
          <input id=${`c-${i}`} type="number" min="1" inputmode="numeric" value=${it.containers} onInput=${(e) => setItem(i, "containers", e.target.value)} ...${aria(`c-${i}`, errors[`items.${i}.containers`])}/><//>
        ${d.items.length > 1 && html`<button type="button" class="secondary" onClick=${() => setD((x) => ({ ...x, items: x.items.filter((_, j) => j !== i) }))}>${tt("removeItem")}</button>`}
      </div>`)}
      ${errors.items && html`<p class="field-error">${tt("fix")}: ${errors.items}</p>`}
      <button type="button" class="secondary" onClick=${() => setD((x) => ({ ...x, items: [...x.items, { beverage: "starköl", volume_liters: "", containers: "" }] }))}>${tt("addItem")}</button>
    </fieldset>
    <${Field} id="p-area" label=${tt("area")} error=${errors.area_id}>
      <select id="p-area" value=${d.area_id} onChange=${(e) => set("area_id", e.target.value)} ...${aria("p-area", errors.area_id)}>
        ${areas.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</select><//>
    <${Field} id="p-place" label=${tt("place")} error=${errors.place}>
      <input id="p-place" list="p-places" maxlength="100" value=${d.place} onInput=${(e) => set("place", e.target.value)} ...${aria("p-place", errors.place)}/>
      <datalist id="p-places">${((area && area.places) || []).map((p) => html`<option value=${p}/>`)}</datalist><//>
    <${Field} id="p-when" label=${tt("when")} error=${errors.occurred_at}>
      <input id="p-when" type="datetime-local" value=${d.when} onInput=${(e) => set("when", e.target.value)} ...${aria("p-when", errors.occurred_at)}/><//>
    <${Field} id="p-unit" label=${tt("unit")} error=${errors.unit}>
      <input id="p-unit" maxlength="100" value=${d.unit} onInput=${(e) => set("unit", e.target.value)} ...${aria("p-unit", errors.unit)}/><//>
    <fieldset><legend>${tt("guardianContacted")} / ${tt("guardianCame")}</legend>
      ${["guardian_contacted", "guardian_came", "direct_forfeiture"].map((k) => html`<p><label><input type="checkbox" id=${"p-" + k} checked=${d[k]}
        onChange=${(e) => set(k, e.target.checked)}/> ${tt({ guardian_contacted: "guardianContacted", guardian_came: "guardianCame", direct_forfeiture: "direct" }[k])}</label></p>`)}
      ${errors.guardian_came && html`<p class="field-error">${tt("fix")}: ${errors.guardian_came}</p>`}
    </fieldset>
    <${Field} id="p-source" label=${tt("source")} error=${errors.source}>
      <select id="p-source" value=${d.source} onChange=${(e) => set("source", e.target.value)}>
        ${Object.keys(T.sv.sources).map((s) => html`<option value=${s}>${word("sources", s)}</option>`)}</select><//>
    <p><label><input type="checkbox" id="p-social" checked=${d.social_services_notified} onChange=${(e) => set("social_services_notified", e.target.checked)}/> ${tt("socialNotified")}</label></p>
    <p><label><input type="checkbox" id="p-notify" checked=${d.notify_social_services} onChange=${(e) => set("notify_social_services", e.target.checked)}/> ${tt("notifySocial")}</label></p>
    <p><button class="primary" type="submit" id="p-send" disabled=${busy}>${tt("send")}</button></p>
    ${problem && html`<div class="msg bad" role="alert" id="p-refusal"><p>${tt("refused")}</p>
      <ul>${keys.map((k) => html`<li>${fieldName(k) ? html`<strong>${fieldName(k)}</strong>: ` : ""}${errors[k]}</li>`)}</ul></div>`}
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}${msg.answer && html` <span id="p-recorded" data-protocol=${msg.answer.protocol_id}>${tt("lastId")}: <code>${msg.answer.protocol_id}</code></span>
      ${(msg.answer.warnings || []).length > 0 && html`<ul>${msg.answer.warnings.map((w) => html`<li>${LANG === "sv" ? w.message_sv : w.message_en}</li>`)}</ul>`}`}<//>`}
  </form>`;
}

// ---------------------------------------------------------------------------------------------
// The municipality's exact figures of a period, with downloads
const num = (v) => (typeof v === "number" ? v.toLocaleString(LANG === "sv" ? "sv-SE" : "en-GB") : v ?? 0);
function FigureRows({ k }) {
  if (!k) return html`<p class="hint">${tt("noFigures")}</p>`;
  const bev = typeof k.litres_by_beverage === "object" ? Object.entries(k.litres_by_beverage) : [];
  return html`<dl class="figures">
    <dt>${tt("interventions")}</dt><dd data-figure="interventions">${num(k.interventions)}</dd>
    <dt>${tt("under18")}</dt><dd>${num(k.under_18)}</dd>
    <dt>${tt("gContacted")}</dt><dd>${num(k.guardian_contacted)}</dd>
    <dt>${tt("gCame")}</dt><dd data-figure="guardian_came">${num(k.guardian_came)}</dd>
    <dt>${tt("litresTotal")}</dt><dd data-figure="litres_total">${num(k.litres_total)}</dd>
    ${bev.map(([b, l]) => html`<dt>${word("beverages", b)}</dt><dd>${num(l)} l</dd>`)}</dl>`;
}

// the tertials one may look at: the current one and the five before it
function tertials(today = new Date()) {
  let idx = today.getFullYear() * 3 + Math.floor(today.getMonth() / 4); const out = [];
  for (let k = 0; k < 6; k++, idx--) out.push(`${Math.floor(idx / 3)}-T${(idx % 3) + 1}`);
  return out;
}

// A week (stepped), a range of weeks or a tertial: the address of its figures and its name
function figuresPath(municipality, kind, week, from, to, tertial) {
  const base = `/v1/municipalities/${municipality}/kronoberg`;
  if (kind === "weeks") return `${base}?from=${from}&to=${to}`;
  return `${base}/${kind === "tertial" ? tertial : week}`;
}

function Figures({ municipality, period0, version }) {
  const [kind, setKind] = useState("week");
  const [period, setPeriod] = useState(period0);
  const [from, setFrom] = useState(() => (period0 ? shiftWeek(period0, -3) : "")); const [to, setTo] = useState(period0);
  const [tertial, setTertial] = useState(() => tertials()[0]);
  const [view, setView] = useState(null); const [err, setErr] = useState(null);
  useEffect(() => { setPeriod(period0); setTo(period0); if (period0) setFrom(shiftWeek(period0, -3)); }, [period0]);
  const path = municipality && period ? figuresPath(municipality, kind, period, from, to, tertial) : "";
  useEffect(() => {
    if (!path || (kind === "weeks" && !(from && to))) return;
    api("aggregator", path).then((v) => { setView(v); setErr(null); })
      .catch((e) => { setView(null); setErr(e.message); });
  }, [path, version]);
  const stem = `kronoberg-${municipality}-${kind === "weeks" ? `${from}-${to}` : kind === "tertial" ? tertial : period}`;
  const download = (fmt) => saveFile("aggregator", `${path}${path.includes("?") ? "&" : "?"}format=${fmt}&lang=${LANG}`, `${stem}.${fmt}`)
    .catch((e) => setErr(e.message));
  const covered = view && view.weeks ? tt("covers")(dateText(view.start), dateText(view.end), view.weeks.length) : "";
  return html`<section class="card" aria-labelledby="fig-title" id="kronoberg">
    <h2 id="fig-title">${tt("figures")}${view ? ` · ${view.municipality_name}` : ""}</h2>
    <div class="row"><div><label for="fig-kind">${tt("show")}</label>
      <select id="fig-kind" value=${kind} onChange=${(e) => setKind(e.target.value)}>
        ${["week", "weeks", "tertial"].map((k) => html`<option value=${k}>${tt("kinds")[k]}</option>`)}</select></div>
      ${kind === "weeks" && html`<div><label for="fig-from">${tt("fromWeek")}</label>
          <input type="week" id="fig-from" value=${from} max=${to} onChange=${(e) => setFrom(e.target.value)}/></div>
        <div><label for="fig-to">${tt("toWeek")}</label>
          <input type="week" id="fig-to" value=${to} min=${from} onChange=${(e) => setTo(e.target.value)}/></div>`}
      ${kind === "tertial" && html`<div><label for="fig-tertial">${tt("tertialChoice")}</label>
        <select id="fig-tertial" value=${tertial} onChange=${(e) => setTertial(e.target.value)}>
          ${tertials().map((p) => html`<option value=${p}>${periodText(p)}</option>`)}</select></div>`}</div>
    ${kind === "week" && html`<div class="row"><button type="button" class="secondary" onClick=${() => setPeriod(shiftWeek(period, -1))}>${tt("prev")}</button>
      <strong id="fig-period">${periodText(period)}</strong>
      <button type="button" class="secondary" onClick=${() => setPeriod(shiftWeek(period, 1))}>${tt("next")}</button></div>`}
    ${kind !== "week" && view && html`<p id="fig-period"><strong>${kind === "tertial" ? periodText(view.period) : `${periodText(view.from)} – ${periodText(view.to)}`}</strong><br/>
      <span class="hint" id="fig-covers">${covered}</span></p>`}
    ${err && html`<${Msg} kind="bad">${pick(err)}<//>`}
    ${view && html`<h3>${tt("whole")}</h3><div id="fig-total"><${FigureRows} k=${view.totals}/></div>
      <h3>${tt("perArea")}</h3>${view.areas.map((a) => html`<div class="fig-area" data-area=${a.area_id || "outside"}><h4>${a.area_id ? a.area_name : tt("outside")}</h4><${FigureRows} k=${a.kronoberg}/></div>`)}`}
    <p><button type="button" id="fig-csv" onClick=${() => download("csv")}>${tt("csv")}</button>
      <button type="button" id="fig-xlsx" onClick=${() => download("xlsx")}>${tt("xlsx")}</button></p>
  </section>`;
}

// ---------------------------------------------------------------------------------------------
// One protocol, read with a stated purpose (the intake logs every read); shared with the social services' page
export function ReadProtocol({ initialId = "", heading = true }) {
  const [id, setId] = useState(initialId); const [purpose, setPurpose] = useState("");
  const [protocol, setProtocol] = useState(null); const [err, setErr] = useState(null);
  useEffect(() => { setId(initialId); setProtocol(null); }, [initialId]);
  const read = async (ev) => {
    ev.preventDefault(); setProtocol(null);
    if (!purpose.trim()) { setErr(tt("needPurpose")); return; }
    try { setProtocol(await api("intake", `/v1/forfeitures/${encodeURIComponent(id.trim())}?purpose=${encodeURIComponent(purpose.trim())}`)); setErr(null); }
    catch (e) { setErr(pick(e.data && (e.data.detail || e.data.title)) || e.message); }
  };
  return html`<section class="card" aria-labelledby="read-title" id="read-protocol">
    ${heading ? html`<h2 id="read-title">${tt("read")}</h2>` : html`<h3 id="read-title">${tt("read")}</h3>`}
    <form onSubmit=${read}>
      <${Field} id="r-id" label=${tt("protocolId")}><input id="r-id" required autocomplete="off" value=${id} onInput=${(e) => setId(e.target.value)}/><//>
      <${Field} id="r-purpose" label=${tt("purpose")} hint=${tt("logged")} error=${err === tt("needPurpose") ? err : null}>
        <input id="r-purpose" aria-required="true" maxlength="200" aria-describedby="r-purpose-hint" value=${purpose} onInput=${(e) => setPurpose(e.target.value)}/><//>
      <p><button type="submit" class="primary" id="r-read">${tt("readBtn")}</button></p>
    </form>
    ${err && err !== tt("needPurpose") && html`<${Msg} kind="bad">${err}<//>`}
    ${protocol && html`<dl class="protocol" id="r-protocol">
      <dt>${tt("name")}</dt><dd>${(protocol.person && protocol.person.name) || "–"}</dd>
      <dt>${tt("pnr")}</dt><dd>${(protocol.person && protocol.person.personal_number) || "–"}</dd>
      <dt>${tt("age")}</dt><dd>${(protocol.person && protocol.person.age) ?? "–"}</dd>
      <dt>${tt("occurred")}</dt><dd>${new Date(protocol.occurred_at).toLocaleString(LANG === "sv" ? "sv-SE" : "en-GB")}</dd>
      <dt>${tt("place")}</dt><dd>${protocol.place || "–"}</dd>
      <dt>${tt("items")}</dt><dd>${protocol.items.map((i) => `${word("beverages", i.beverage)} ${num(i.volume_liters)} l (${i.containers})`).join(", ")}</dd>
      <dt>${tt("guardianContacted")}</dt><dd>${tt(protocol.guardian_contacted ? "yes" : "no")}</dd>
      <dt>${tt("guardianCame")}</dt><dd>${tt(protocol.guardian_came ? "yes" : "no")}</dd>
      <dt>${tt("source")}</dt><dd>${pick(protocol.source_label) || word("sources", protocol.source)}</dd>
      <dt>${tt("socialNotified")}</dt><dd>${tt(protocol.social_services_notified ? "yes" : "no")}</dd></dl>`}
  </section>`;
}

export function Police({ me, online }) {
  const areas = me.areas || [];
  const municipality = (areas[0] && areas[0].municipality_id) || (me.municipalities || [])[0];
  const [version, setVersion] = useState(0);
  // the picture updates a moment after the protocol is accepted: refresh the figures a few times
  const recorded = () => { [1500, 4000, 8000].forEach((ms) => setTimeout(() => setVersion((v) => v + 1), ms)); };
  const period = areas[0] ? areas[0].current_period : "";
  return html`<main id="main">
    <${ProtocolForm} areas=${areas} online=${online} onRecorded=${recorded}/>
    <${Figures} municipality=${municipality} period0=${period} version=${version}/>
    <${ReadProtocol}/>
  </main>`;
}

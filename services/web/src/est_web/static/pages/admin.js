// The administrator's pages: the organisation (areas, places, people, checklists) edited as the organisation
// file (GET /v1/admin/org/document, previewed with PUT ?dry_run=true, then applied), its history with the
// difference of each version, personal API tokens, and the subscriptions of people who left.
import { html, useState, useEffect, LANG, texts, api, dateText, Msg, pick } from "../core.js";

const t = texts({
  sv: {
    title: "Administration", org: "Organisation", history: "Historik", tokens: "API-nycklar", subs: "Avslutade prenumerationer",
    running: "Pågående prenumerationer", noRunning: "Inga pågående prenumerationer.", handover: "Lämna över", handoverTo: "Till",
    chooseOwner: "Välj ny ägare", paused: "pausad", active: "aktiv", events: "Händelser", channel: "Kanal",
    channels: { email: "e-post", webhook: "webhook" }, handedOverTo: (a, b) => `${a} ägs nu av ${b}.`,
    areas: "Områden och platser", people: "Personer", checklists: "Checklistor", places: "Platser", noPlaces: "Inga platser.",
    addPlace: "Lägg till plats", newPlace: "Ny plats i", rename: "Byt namn", remove: "Ta bort", save: "Spara", cancel: "Avbryt",
    addArea: "Lägg till område", areaName: "Områdets namn", areaPlaces: "Platser (kommaseparerade)", cadence: "Rapporteringstakt",
    weekly: "varje vecka", biweekly: "varannan vecka", addPerson: "Lägg till person", name: "Namn", actor: "Aktör", email: "E-post",
    roles: "Roller", personAreas: "Områden", whole: "hela kommunen", edit: "Ändra", leave: "Slutar", successor: "Efterträdare",
    leaveNote: "Personen tas bort ur organisationen; efterträdaren tar över prenumerationerna.", noSuccessor: "ingen",
    checklist: "Checklista som rapportörerna fyller i", versions: "Versioner", items: "punkter", newVersion: "Ny version",
    labelSv: "Fråga (svenska)", labelEn: "Fråga (engelska)", helpSv: "Hjälptext (svenska)", helpEn: "Hjälptext (engelska)",
    review: "Granska ändringen", willBe: (v) => `Blir version ${v} av organisationen.`, apply: "Verkställ", applied: (v) => `Version ${v} är sparad.`,
    noChange: "Det ändrar ingenting.", step2: (n) => `Därefter tas ${n} bort ur organisationen.`, invalid: "Ändringen kan inte göras; se det markerade.",
    version: "Version", by: "av", showDiff: "Visa skillnad mot föregående", diffTitle: (v) => `Skillnad: version ${v} mot version ${v - 1}`,
    firstVersion: "Den första versionen.", person: "Person", choosePerson: "Välj person", tokenName: "Vad nyckeln används till",
    expires: "Gäller till (valfritt)", issue: "Utfärda nyckel", noTokens: "Inga utfärdade nycklar.", lastUsed: "Senast använd", never: "aldrig",
    noExpiry: "tills den återkallas", revoke: "Återkalla", revoked: "Nyckeln är återkallad.", copy: "Kopiera", copied: "Kopierad.",
    shownOnce: "Nyckeln visas bara nu och aldrig igen. Kopiera den och spara den säkert.", newToken: "Ny nyckel",
    noSubs: "Inga avslutade prenumerationer.", owner: "Ägare", endedAt: "Avslutad", restore: "Återställ", restoreTo: "Ny ägare",
    defaultOwner: "efterträdaren (eller ägaren)", restored: (n) => `Prenumerationen ägs nu av ${n}.`, loading: "Hämtar…",
    kinds: { municipality: ["Ny kommun", "Borttagen kommun", "Ändrad kommun"], area: ["Nytt område", "Borttaget område", "Ändrat område"],
      actor: ["Ny aktör", "Borttagen aktör", "Ändrad aktör"], person: ["Ny person", "Borttagen person", "Ändrad person"] },
    fields: { places: "platser", name: "namn", roles: "roller", areas: "områden", area_ids: "områden", email: "e-post", successor: "efterträdare",
      token: "nyckel", actor: "aktör", cadence: "rapporteringstakt", checklist: "checklista", accepted_checklists: "godtagna checklistor",
      alerts: "larmregler", municipalities: "kommuner", kind: "slag", replaces: "ersätter", deadline_time: "sista tid", deadline_weekday: "sista dag" },
    checklistAdded: (n) => `Ny checklista: ${n}`, handedOver: (a, b) => `${a} lämnar över till ${b}`, tokenIssued: (p) => `Ny API-nyckel för ${p}`,
    tokenRevoked: (p) => `API-nyckel för ${p} återkallad`, tokenExpired: (p) => `Utgången API-nyckel för ${p} borttagen`,
    subsChanged: (n) => `Deklarerade prenumerationer ändrade (${n} nu)`,
    placeAdded: (a, p) => `${a}: ny plats ${p}`, placeRemoved: (a, p) => `${a}: platsen ${p} borttagen`, renamed: (a, b) => `${a} heter nu ${b}`,
    roleAdded: (p, r) => `${p}: ny roll ${r}`, roleRemoved: (p, r) => `${p}: rollen ${r} borttagen`,
    areaGained: (p, a) => `${p}: nytt område ${a}`, areaLost: (p, a) => `${p}: området ${a} borttaget`,
    checklistChanged: (m, a, b) => `${m}: checklista ${a} → ${b}`, tokensCount: (a, b) => `Utfärdade API-nycklar: ${a} → ${b}`,
    roleNames: { reporter: "rapportör", key_function: "nyckelfunktion", beredningsgrupp: "beredningsgrupp", styrgrupp: "styrgrupp",
      police: "polis", social_services: "socialtjänst", admin: "administratör" },
  },
  en: {
    title: "Administration", org: "Organisation", history: "History", tokens: "API tokens", subs: "Ended subscriptions",
    running: "Running subscriptions", noRunning: "No running subscriptions.", handover: "Hand over", handoverTo: "To",
    chooseOwner: "Choose the new owner", paused: "paused", active: "active", events: "Events", channel: "Channel",
    channels: { email: "e-mail", webhook: "webhook" }, handedOverTo: (a, b) => `${a} is now owned by ${b}.`,
    areas: "Areas and places", people: "People", checklists: "Checklists", places: "Places", noPlaces: "No places.",
    addPlace: "Add place", newPlace: "New place in", rename: "Rename", remove: "Remove", save: "Save", cancel: "Cancel",
    addArea: "Add area", areaName: "Area name", areaPlaces: "Places (comma separated)", cadence: "Reporting cadence",
    weekly: "every week", biweekly: "every second week", addPerson: "Add person", name: "Name", actor: "Actor", email: "E-mail",
    roles: "Roles", personAreas: "Areas", whole: "the whole municipality", edit: "Change", leave: "Leaving", successor: "Successor",
    leaveNote: "The person is removed from the organisation; the successor takes over their subscriptions.", noSuccessor: "none",
    checklist: "Checklist the reporters fill in", versions: "Versions", items: "items", newVersion: "New version",
    labelSv: "Question (Swedish)", labelEn: "Question (English)", helpSv: "Help (Swedish)", helpEn: "Help (English)",
    review: "Review the change", willBe: (v) => `Becomes version ${v} of the organisation.`, apply: "Apply", applied: (v) => `Version ${v} is saved.`,
    noChange: "This changes nothing.", step2: (n) => `Then ${n} is removed from the organisation.`, invalid: "The change cannot be made; see what is marked.",
    version: "Version", by: "by", showDiff: "Show the difference to the previous one", diffTitle: (v) => `Difference: version ${v} against version ${v - 1}`,
    firstVersion: "The first version.", person: "Person", choosePerson: "Choose a person", tokenName: "What the token is for",
    expires: "Valid until (optional)", issue: "Issue token", noTokens: "No issued tokens.", lastUsed: "Last used", never: "never",
    noExpiry: "until revoked", revoke: "Revoke", revoked: "The token is revoked.", copy: "Copy", copied: "Copied.",
    shownOnce: "The token is shown only now and never again. Copy it and keep it safe.", newToken: "New token",
    noSubs: "No ended subscriptions.", owner: "Owner", endedAt: "Ended", restore: "Restore", restoreTo: "New owner",
    defaultOwner: "the successor (or the owner)", restored: (n) => `The subscription is now owned by ${n}.`, loading: "Loading…",
    kinds: { municipality: ["New municipality", "Removed municipality", "Changed municipality"], area: ["New area", "Removed area", "Changed area"],
      actor: ["New actor", "Removed actor", "Changed actor"], person: ["New person", "Removed person", "Changed person"] },
    fields: { places: "places", name: "name", roles: "roles", areas: "areas", area_ids: "areas", email: "e-mail", successor: "successor",
      token: "token", actor: "actor", cadence: "cadence", checklist: "checklist", accepted_checklists: "accepted checklists",
      alerts: "alert rules", municipalities: "municipalities", kind: "kind", replaces: "replaces", deadline_time: "deadline time", deadline_weekday: "deadline day" },
    checklistAdded: (n) => `New checklist: ${n}`, handedOver: (a, b) => `${a} hands over to ${b}`, tokenIssued: (p) => `New API token for ${p}`,
    tokenRevoked: (p) => `API token of ${p} revoked`, tokenExpired: (p) => `Expired API token of ${p} removed`,
    subsChanged: (n) => `Declared subscriptions changed (${n} now)`,
    placeAdded: (a, p) => `${a}: new place ${p}`, placeRemoved: (a, p) => `${a}: place ${p} removed`, renamed: (a, b) => `${a} is now called ${b}`,
    roleAdded: (p, r) => `${p}: new role ${r}`, roleRemoved: (p, r) => `${p}: role ${r} removed`,
    areaGained: (p, a) => `${p}: new area ${a}`, areaLost: (p, a) => `${p}: area ${a} removed`,
    checklistChanged: (m, a, b) => `${m}: checklist ${a} → ${b}`, tokensCount: (a, b) => `Issued API tokens: ${a} → ${b}`,
    roleNames: { reporter: "reporter", key_function: "key function", beredningsgrupp: "preparation group", styrgrupp: "steering group",
      police: "police", social_services: "social services", admin: "administrator" },
  },
});
const ROLES = ["reporter", "key_function", "beredningsgrupp", "styrgrupp", "police", "social_services", "admin"];
const roleName = (r) => t("roleNames")[r] || r;
const copyOf = (x) => JSON.parse(JSON.stringify(x));
const when = (iso) => (iso ? `${dateText(iso)} ${String(iso).slice(11, 16)}` : "");
const slug = (name, taken) => {
  const base = (name.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "") || "x").slice(0, 50);
  let id = base, n = 2; while (taken.has(id)) id = `${base}-${n++}`; return id;
};
const checklistName = (c) => (c ? `${(LANG === "en" && c.name_en) || c.name_sv} (${t("version").toLowerCase()} ${c.version})` : "");

// every id of an organisation (a file's shape or a snapshot's) with its name
function namesOf(...orgs) {
  const out = {};
  for (const o of orgs.filter(Boolean)) {
    const each = (x) => (Array.isArray(x) ? x : Object.values(x || {}));
    for (const m of each(o.municipalities)) { out[m.id] = m.name; for (const a of m.areas || []) out[a.id] = a.name; }
    for (const k of ["areas", "actors", "people"]) for (const x of each(o[k])) out[x.id] = x.name;
    for (const c of each(o.checklists)) out[`${c.id}@${c.version}`] = checklistName(c);
  }
  return (id) => out[id] || id;
}

// one of the intake's changes ("area araby changed (places)") in words, with names
export function changeText(c, name) {
  let m = /^(municipality|area|actor|person) (\S+) (added|removed|changed)(?: \((.*)\))?$/.exec(c);
  if (m) { const [added, removed, changed] = t("kinds")[m[1]]; const head = { added, removed, changed }[m[3]];
    const fields = m[4] ? ` (${m[4].split(", ").map((f) => t("fields")[f] || f).join(", ")})` : "";
    return `${head}: ${name(m[2])}${fields}`; }
  if ((m = /^checklist (\S+) added$/.exec(c))) return t("checklistAdded")(name(m[1]));
  if ((m = /^person (\S+) handed over to (\S+)$/.exec(c))) return t("handedOver")(name(m[1]), name(m[2]));
  if ((m = /^token \S+ issued to person (\S+)$/.exec(c))) return t("tokenIssued")(name(m[1]));
  if ((m = /^token \S+ of person (\S+) revoked$/.exec(c))) return t("tokenRevoked")(name(m[1]));
  if ((m = /^token \S+ of person (\S+) expired, removed$/.exec(c))) return t("tokenExpired")(name(m[1]));
  if ((m = /^declared subscriptions changed \((\d+) now\)$/.exec(c))) return t("subsChanged")(m[1]);
  return c;
}

// what differs between two stored versions (snapshots), field by field, in words
export function versionDiff(old, now) {
  const name = namesOf(now, old), out = [];
  const plus = (a, b) => (b || []).filter((x) => !(a || []).includes(x));
  for (const [kind, key] of [["municipality", "municipalities"], ["area", "areas"], ["actor", "actors"], ["person", "people"]]) {
    const a = old[key] || {}, b = now[key] || {}, [added, removed] = t("kinds")[kind];
    for (const id of Object.keys(b)) if (!a[id]) out.push(`${added}: ${b[id].name}`);
    for (const id of Object.keys(a)) if (!b[id]) out.push(`${removed}: ${a[id].name}`);
    for (const id of Object.keys(b)) {
      const x = a[id], y = b[id]; if (!x) continue;
      if (x.name !== y.name) out.push(t("renamed")(x.name, y.name));
      for (const p of plus(x.places, y.places)) out.push(t("placeAdded")(y.name, p));
      for (const p of plus(y.places, x.places)) out.push(t("placeRemoved")(y.name, p));
      if (kind === "person") {
        for (const r of plus(x.roles, y.roles)) out.push(t("roleAdded")(y.name, roleName(r)));
        for (const r of plus(y.roles, x.roles)) out.push(t("roleRemoved")(y.name, roleName(r)));
        for (const r of plus(x.areas, y.areas)) out.push(t("areaGained")(y.name, name(r)));
        for (const r of plus(y.areas, x.areas)) out.push(t("areaLost")(y.name, name(r)));
        if (x.successor !== y.successor && y.successor) out.push(t("handedOver")(y.name, name(y.successor)));
      }
      if (kind === "municipality" && x.checklist !== y.checklist) out.push(t("checklistChanged")(y.name, name(x.checklist || now.current_checklist), name(y.checklist || now.current_checklist)));
    }
  }
  for (const ref of Object.keys(now.checklists || {})) if (!(old.checklists || {})[ref]) out.push(t("checklistAdded")(name(ref)));
  const ta = Object.keys(old.tokens || {}).length, tb = Object.keys(now.tokens || {}).length;
  if (ta !== tb) out.push(t("tokensCount")(ta, tb));
  return out;
}

// the intake's field errors under one path ("people.3"), shown next to what they concern
function FieldErrors({ errors, at }) {
  const mine = (errors || []).filter((e) => e.field === at || String(e.field).startsWith(`${at}.`));
  return mine.length ? html`<div class="field-errors" role="alert">${mine.map((e) => html`<p class="field-error">${e.message}</p>`)}</div>` : null;
}

// ---------------------------------------------------------------------------------------------
export function Admin({ me }) {
  const [tab, setTab] = useState("org");
  const tabs = ["org", "history", "tokens", "running", "subs"];
  return html`<main id="main"><h2>${t("title")}</h2>
    <div class="tabs" role="group" aria-label=${t("title")}>${tabs.map((k) => html`<button class=${tab === k ? "primary" : "secondary"}
      id=${`tab-${k}`} aria-pressed=${tab === k ? "true" : "false"} onClick=${() => setTab(k)}>${t(k)}</button>`)}</div>
    ${tab === "org" && html`<${Organisation}/>`}${tab === "history" && html`<${History}/>`}
    ${tab === "tokens" && html`<${Tokens}/>`}${tab === "running" && html`<${Running}/>`}${tab === "subs" && html`<${Ended}/>`}</main>`;
}

const onVersion = (version) => ({ "If-Match": `"${version}"` });

function Organisation() {
  const [doc, setDoc] = useState(null); const [snap, setSnap] = useState(null);
  const [pending, setPending] = useState(null); const [errors, setErrors] = useState([]); const [msg, setMsg] = useState(null);
  const load = () => Promise.all([api("intake", "/v1/admin/org/document"), api("intake", "/v1/admin/org")])
    .then(([d, s]) => { setDoc(d); setSnap(s); }).catch((e) => setMsg({ kind: "bad", text: e.message }));
  useEffect(() => { load(); }, []);
  if (!doc || !snap) return html`${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}<p class="loading">${t("loading")}</p>`;

  // preview a changed document (and, for a person leaving, the document after it) for confirmation
  const propose = async (next, then = null, thenNote = "") => {
    setMsg(null); setErrors([]);
    try {
      // If-Match: the version this page shows; another administrator's change meanwhile gives 412, never an overwrite
      const dry = await api("intake", "/v1/admin/org?dry_run=true", { method: "PUT", body: next, headers: onVersion(snap.version) });
      if (!dry.changed && !then) { setMsg({ kind: "ok", text: t("noChange") }); return; }
      setPending({ doc: next, then, thenNote, version: dry.version, changes: dry.changes });
      setTimeout(() => document.getElementById("review")?.focus(), 0);
    } catch (e) { changedMeanwhile(e) || (setErrors((e.data && e.data.errors) || []), setMsg({ kind: "bad", text: e.status === 422 ? t("invalid") : pick(e.message) })); }
  };
  const apply = async () => {
    try {
      let r = await api("intake", "/v1/admin/org", { method: "PUT", body: pending.doc, headers: onVersion(snap.version) });
      if (pending.then) r = await api("intake", "/v1/admin/org", { method: "PUT", body: pending.then, headers: onVersion(r.version) });
      await load(); setPending(null); setMsg({ kind: "ok", text: t("applied")(r.version) });
    } catch (e) { setPending(null); changedMeanwhile(e) || (setErrors((e.data && e.data.errors) || []), setMsg({ kind: "bad", text: pick(e.message) })); }
  };
  // someone else changed the organisation since it was loaded: show theirs, and say this change was not made
  const changedMeanwhile = (e) => {
    if (e.status !== 412) return false;
    setPending(null); load().then(() => setMsg({ kind: "bad", text: pick(e.message) }));
    return true;
  };
  const name = namesOf(doc, pending && pending.doc);
  const edit = (fn, ...rest) => { const next = copyOf(doc); fn(next); propose(next, ...rest); };
  return html`<section aria-labelledby="org-h"><h3 id="org-h" class="sr">${t("org")}</h3>
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    ${pending && html`<div class="card review" id="review" tabindex="-1" role="region" aria-labelledby="review-h">
      <h3 id="review-h">${t("review")}</h3><p>${t("willBe")(pending.version)}</p>
      <ul id="changes">${pending.changes.map((c) => html`<li>${changeText(c, name)}</li>`)}
        ${pending.then && html`<li>${pending.thenNote}</li>`}</ul>
      <div class="row"><button class="primary" id="apply" onClick=${apply}>${t("apply")}</button>
        <button class="secondary" onClick=${() => setPending(null)}>${t("cancel")}</button></div></div>`}
    <${Areas} doc=${doc} errors=${errors} edit=${edit}/>
    <${People} doc=${doc} errors=${errors} edit=${edit} name=${name}/>
    <${Checklists} doc=${doc} snap=${snap} errors=${errors} edit=${edit}/></section>`;
}

function Areas({ doc, errors, edit }) {
  const [adding, setAdding] = useState({}); const [renaming, setRenaming] = useState(null); const [area, setArea] = useState({});
  const taken = new Set(doc.municipalities.flatMap((m) => [m.id, ...m.areas.map((a) => a.id)]).concat(doc.people.map((p) => p.id), doc.actors.map((a) => a.id)));
  return html`<div class="card"><h3>${t("areas")}</h3>${doc.municipalities.map((m, i) => html`<section class="muni" aria-label=${m.name}>
    <h4>${m.name}</h4>
    ${m.areas.map((a, j) => { const key = `${i}.${j}`; return html`<div class="area" data-area=${a.id}><h5>${a.name}</h5>
      <ul class="plain places">${a.places.length ? a.places.map((p, k) => html`<li>
        ${renaming && renaming.key === key && renaming.k === k
          ? html`<form class="row" onSubmit=${(e) => { e.preventDefault(); edit((d) => { d.municipalities[i].areas[j].places[k] = renaming.value.trim(); }); setRenaming(null); }}>
              <label class="sr" for=${`rn-${key}-${k}`}>${t("rename")}: ${p}</label>
              <input type="text" id=${`rn-${key}-${k}`} value=${renaming.value} onInput=${(e) => setRenaming({ ...renaming, value: e.target.value })}/>
              <button class="secondary" type="submit">${t("save")}</button></form>`
          : html`<span>${p}</span> <button class="secondary small" aria-label=${`${t("rename")}: ${p}`} onClick=${() => setRenaming({ key, k, value: p })}>${t("rename")}</button>
              <button class="secondary small" aria-label=${`${t("remove")}: ${p}`} onClick=${() => edit((d) => { d.municipalities[i].areas[j].places.splice(k, 1); })}>${t("remove")}</button>`}
        </li>`) : html`<li>${t("noPlaces")}</li>`}</ul>
      <form class="row" onSubmit=${(e) => { e.preventDefault(); const v = (adding[key] || "").trim(); if (v) edit((d) => { d.municipalities[i].areas[j].places.push(v); }); }}>
        <div><label for=${`np-${a.id}`}>${t("newPlace")} ${a.name}</label>
        <input type="text" id=${`np-${a.id}`} value=${adding[key] || ""} onInput=${(e) => setAdding({ ...adding, [key]: e.target.value })}/></div>
        <div><button class="secondary" type="submit">${t("addPlace")}</button></div></form>
      <${FieldErrors} errors=${errors} at=${`municipalities.${i}.areas.${j}`}/></div>`; })}
    <form class="add-area" onSubmit=${(e) => { e.preventDefault(); const n = (area[i] || {}).name || ""; if (!n.trim()) return;
        const places = ((area[i] || {}).places || "").split(",").map((s) => s.trim()).filter(Boolean);
        edit((d) => { d.municipalities[i].areas.push({ id: slug(n, taken), name: n.trim(), cadence: (area[i] || {}).cadence || "weekly", places }); }); }}>
      <h5>${t("addArea")}</h5><div class="row">
      <div><label for=${`an-${m.id}`}>${t("areaName")}</label><input type="text" id=${`an-${m.id}`} value=${(area[i] || {}).name || ""} onInput=${(e) => setArea({ ...area, [i]: { ...area[i], name: e.target.value } })}/></div>
      <div><label for=${`ap-${m.id}`}>${t("areaPlaces")}</label><input type="text" id=${`ap-${m.id}`} value=${(area[i] || {}).places || ""} onInput=${(e) => setArea({ ...area, [i]: { ...area[i], places: e.target.value } })}/></div>
      <div><label for=${`ac-${m.id}`}>${t("cadence")}</label><select id=${`ac-${m.id}`} onChange=${(e) => setArea({ ...area, [i]: { ...area[i], cadence: e.target.value } })}>
        <option value="weekly">${t("weekly")}</option><option value="biweekly">${t("biweekly")}</option></select></div>
      <div><button class="secondary" type="submit">${t("addArea")}</button></div></div>
      <${FieldErrors} errors=${errors} at=${`municipalities.${i}.areas.${m.areas.length}`}/></form></section>`)}</div>`;
}

// a person's roles and areas as chosen in a form
function PersonForm({ doc, value, onChange, idp }) {
  const set = (k, v) => onChange({ ...value, [k]: v });
  const toggle = (k, x) => set(k, value[k].includes(x) ? value[k].filter((y) => y !== x) : [...value[k], x]);
  return html`<div class="row"><div><label for=${`${idp}-name`}>${t("name")}</label><input type="text" id=${`${idp}-name`} value=${value.name} onInput=${(e) => set("name", e.target.value)}/></div>
    <div><label for=${`${idp}-actor`}>${t("actor")}</label><select id=${`${idp}-actor`} value=${value.actor} onChange=${(e) => set("actor", e.target.value)}>
      ${doc.actors.map((a) => html`<option value=${a.id}>${a.name}</option>`)}</select></div>
    <div><label for=${`${idp}-email`}>${t("email")}</label><input type="text" id=${`${idp}-email`} value=${value.email || ""} onInput=${(e) => set("email", e.target.value || null)}/></div></div>
    <fieldset class="item"><legend>${t("roles")}</legend><div class="chips">${ROLES.map((r) => html`<label><input type="checkbox" checked=${value.roles.includes(r)} onChange=${() => toggle("roles", r)}/> ${roleName(r)}</label>`)}</div></fieldset>
    <fieldset class="item"><legend>${t("personAreas")}</legend><div class="chips">${doc.municipalities.map((m) => html`
      <label><input type="checkbox" checked=${value.areas.includes(m.id)} onChange=${() => toggle("areas", m.id)}/> ${m.name} (${t("whole")})</label>
      ${m.areas.map((a) => html`<label><input type="checkbox" checked=${value.areas.includes(a.id)} onChange=${() => toggle("areas", a.id)}/> ${a.name}</label>`)}`)}</div></fieldset>`;
}

function People({ doc, errors, edit, name }) {
  const blank = { name: "", actor: (doc.actors[0] || {}).id, email: null, roles: ["reporter"], areas: [] };
  const [adding, setAdding] = useState(blank); const [editing, setEditing] = useState(null); const [leaving, setLeaving] = useState(null);
  const taken = new Set(doc.municipalities.flatMap((m) => [m.id, ...m.areas.map((a) => a.id)]).concat(doc.people.map((p) => p.id), doc.actors.map((a) => a.id)));
  const leave = (i) => {
    const p = doc.people[i], withSuccessor = copyOf(doc); withSuccessor.people[i].successor = leaving.to || null;
    const without = copyOf(withSuccessor); without.people.splice(i, 1);
    for (const q of without.people) if (q.successor === p.id) q.successor = leaving.to || null;
    if (!leaving.to) { edit((d) => { d.people.splice(i, 1); }); } else { edit((d) => { d.people[i].successor = leaving.to; }, without, t("step2")(p.name)); }
    setLeaving(null);
  };
  return html`<div class="card"><h3>${t("people")}</h3><div class="scroll"><table class="people"><thead><tr><th>${t("name")}</th><th>${t("actor")}</th><th>${t("roles")}</th><th>${t("personAreas")}</th><th><span class="sr">${t("edit")}</span></th></tr></thead>
    <tbody>${doc.people.map((p, i) => html`<tr data-person=${p.id}><td>${p.name}</td><td>${name(p.actor)}</td><td>${p.roles.map(roleName).join(", ")}</td>
      <td>${p.areas.map(name).join(", ")}</td><td>
      <button class="secondary small" aria-label=${`${t("edit")}: ${p.name}`} onClick=${() => setEditing({ i, value: copyOf(p) })}>${t("edit")}</button>
      <button class="secondary small" aria-label=${`${t("leave")}: ${p.name}`} onClick=${() => setLeaving({ i, to: "" })}>${t("leave")}</button></td></tr>
      ${editing && editing.i === i && html`<tr><td colspan="5"><form onSubmit=${(e) => { e.preventDefault(); edit((d) => { d.people[i] = editing.value; }); setEditing(null); }}>
        <${PersonForm} doc=${doc} value=${editing.value} onChange=${(v) => setEditing({ i, value: v })} idp=${`ep-${p.id}`}/>
        <div class="row"><button class="primary" type="submit">${t("save")}</button><button class="secondary" type="button" onClick=${() => setEditing(null)}>${t("cancel")}</button></div></form></td></tr>`}
      ${leaving && leaving.i === i && html`<tr><td colspan="5"><p class="hint">${t("leaveNote")}</p><div class="row">
        <div><label for=${`succ-${p.id}`}>${t("successor")}</label><select id=${`succ-${p.id}`} onChange=${(e) => setLeaving({ i, to: e.target.value })}>
          <option value="">${t("noSuccessor")}</option>${doc.people.filter((q) => q.id !== p.id).map((q) => html`<option value=${q.id}>${q.name}</option>`)}</select></div>
        <div><button class="primary" onClick=${() => leave(i)}>${t("leave")}</button> <button class="secondary" onClick=${() => setLeaving(null)}>${t("cancel")}</button></div></div></td></tr>`}
      ${errors.some((e) => String(e.field).startsWith(`people.${i}.`)) && html`<tr><td colspan="5"><${FieldErrors} errors=${errors} at=${`people.${i}`}/></td></tr>`}`)}</tbody></table></div>
    <form class="add-person" onSubmit=${(e) => { e.preventDefault(); if (!adding.name.trim()) return;
        edit((d) => { d.people.push({ id: slug(adding.name, taken), ...adding, name: adding.name.trim() }); }); }}>
      <h4>${t("addPerson")}</h4><${PersonForm} doc=${doc} value=${adding} onChange=${setAdding} idp="np"/>
      <${FieldErrors} errors=${errors} at=${`people.${doc.people.length}`}/>
      <button class="secondary" type="submit" id="add-person">${t("addPerson")}</button></form></div>`;
}

function Checklists({ doc, snap, errors, edit }) {
  const [draft, setDraft] = useState(null);
  const all = Object.values(snap.checklists || {}).sort((a, b) => a.id.localeCompare(b.id) || b.version - a.version);
  const latest = {}; for (const c of all) if (!latest[c.id]) latest[c.id] = c;
  const ids = Object.keys(latest);
  const startNew = (c) => { const v = copyOf(c); v.version = Math.max(...all.filter((x) => x.id === c.id).map((x) => x.version)) + 1; setDraft(v); };
  const setItem = (j, k, v) => { const d = copyOf(draft); d.items[j][k] = v || (k.startsWith("help") ? null : ""); setDraft(d); };
  return html`<div class="card"><h3>${t("checklists")}</h3>
    ${doc.municipalities.map((m, i) => html`<div class="row"><div><label for=${`cl-${m.id}`}>${m.name}: ${t("checklist")}</label>
      <select id=${`cl-${m.id}`} value=${m.checklist || snap.current_checklist} onChange=${(e) => edit((d) => { d.municipalities[i].checklist = e.target.value; })}>
        ${all.map((c) => html`<option value=${`${c.id}@${c.version}`}>${checklistName(c)}</option>`)}</select>
      <${FieldErrors} errors=${errors} at=${`municipalities.${i}.checklist`}/></div></div>`)}
    <h4>${t("versions")}</h4>${ids.map((id) => html`<div class="checklist">${all.filter((c) => c.id === id).map((c) => html`<details><summary>${checklistName(c)}, ${c.items.length} ${t("items")}</summary>
        <ol>${c.items.map((it) => html`<li>${(LANG === "en" && it.label_en) || it.label_sv}${(it.help_sv || it.help_en) && html`<br/><span class="hint">${(LANG === "en" && it.help_en) || it.help_sv}</span>`}</li>`)}</ol></details>`)}
      <button class="secondary" onClick=${() => startNew(latest[id])}>${t("newVersion")}: ${checklistName(latest[id])}</button></div>`)}
    ${draft && html`<form class="card" onSubmit=${(e) => { e.preventDefault(); const c = copyOf(draft); for (const k of ["ref", "answer_types", "levels", "note_max_length", "note_hint", "areas"]) delete c[k];
        edit((d) => { d.checklists = [...(d.checklists || []), c]; }); setDraft(null); }}>
      <h4>${checklistName(draft)}</h4>${draft.items.map((it, j) => html`<fieldset class="item"><legend>${it.label_sv}</legend><div class="row">
        ${[["label_sv", "labelSv"], ["label_en", "labelEn"], ["help_sv", "helpSv"], ["help_en", "helpEn"]].map(([k, l]) => html`<div>
          <label for=${`cl-${j}-${k}`}>${t(l)}</label><input type="text" id=${`cl-${j}-${k}`} value=${it[k] || ""} onInput=${(e) => setItem(j, k, e.target.value)}/></div>`)}</div></fieldset>`)}
      <${FieldErrors} errors=${errors} at=${`checklists.${(doc.checklists || []).length}`}/>
      <div class="row"><button class="primary" type="submit">${t("save")}</button><button class="secondary" type="button" onClick=${() => setDraft(null)}>${t("cancel")}</button></div></form>`}</div>`;
}

// ---------------------------------------------------------------------------------------------
function History() {
  const [versions, setVersions] = useState(null); const [diff, setDiff] = useState(null); const [err, setErr] = useState("");
  const [snap, setSnap] = useState(null);
  useEffect(() => { Promise.all([api("intake", "/v1/admin/org/history"), api("intake", "/v1/admin/org")])
    .then(([h, s]) => { setVersions(h.versions); setSnap(s); }).catch((e) => setErr(e.message)); }, []);
  const show = async (v) => {
    try {
      const now = await api("intake", `/v1/admin/org/history/${v}`);
      const old = v > 1 ? await api("intake", `/v1/admin/org/history/${v - 1}`) : null;
      setDiff({ v, lines: old ? versionDiff(old, now) : null });
    } catch (e) { setErr(e.message); }
  };
  if (err) return html`<${Msg} kind="bad">${err}<//>`;
  if (!versions) return html`<p class="loading">${t("loading")}</p>`;
  const name = namesOf(snap);
  const by = (who) => (String(who).startsWith("file:") ? String(who).slice(5) : name(who));
  return html`<section aria-labelledby="hist-h" class="card"><h3 id="hist-h">${t("history")}</h3><ol class="plain history">${versions.map((v) => html`<li data-version=${v.version}>
    <strong>${t("version")} ${v.version}</strong> · ${when(v.applied_at)} · ${t("by")} ${by(v.applied_by)}
    <ul>${v.changes.map((c) => html`<li>${changeText(c, name)}</li>`)}</ul>
    <button class="secondary small" aria-label=${`${t("showDiff")}: ${t("version")} ${v.version}`} onClick=${() => show(v.version)}>${t("showDiff")}</button>
    ${diff && diff.v === v.version && html`<div class="diff" role="region" aria-label=${t("diffTitle")(v.version)}><h4>${t("diffTitle")(v.version)}</h4>
      ${diff.lines ? html`<ul>${diff.lines.map((l) => html`<li>${l}</li>`)}</ul>` : html`<p>${t("firstVersion")}</p>`}</div>`}</li>`)}</ol></section>`;
}

// ---------------------------------------------------------------------------------------------
function Tokens() {
  const [doc, setDoc] = useState(null); const [who, setWho] = useState(""); const [list, setList] = useState(null);
  const [form, setForm] = useState({ name: "", expires: "" }); const [shown, setShown] = useState(null); const [msg, setMsg] = useState(null);
  useEffect(() => { api("intake", "/v1/admin/org/document").then((d) => { setDoc(d); if (d.people[0]) setWho(d.people[0].id); }).catch((e) => setMsg({ kind: "bad", text: e.message })); }, []);
  const load = (id) => id && api("intake", `/v1/admin/people/${encodeURIComponent(id)}/tokens`).then((r) => setList(r.tokens)).catch((e) => setMsg({ kind: "bad", text: e.message }));
  useEffect(() => { setList(null); load(who); }, [who]);
  const issue = async (e) => {
    e.preventDefault(); setMsg(null); setShown(null);
    const body = { name: form.name.trim(), ...(form.expires ? { expires_at: `${form.expires}T23:59:59Z` } : {}) };
    try { const r = await api("intake", `/v1/admin/people/${encodeURIComponent(who)}/tokens`, { method: "POST", body }); setShown(r); setForm({ name: "", expires: "" }); load(who); }
    catch (err) { setMsg({ kind: "bad", text: err.message, errors: err.data && err.data.errors }); }
  };
  const revoke = async (id) => {
    try { await api("intake", `/v1/admin/people/${encodeURIComponent(who)}/tokens/${encodeURIComponent(id)}`, { method: "DELETE" }); setMsg({ kind: "ok", text: t("revoked") }); setShown(null); load(who); }
    catch (err) { setMsg({ kind: "bad", text: err.message }); }
  };
  const copy = async () => { try { await navigator.clipboard.writeText(shown.token); setMsg({ kind: "ok", text: t("copied") }); } catch { document.getElementById("new-token").select(); } };
  if (!doc) return msg ? html`<${Msg} kind=${msg.kind}>${msg.text}<//>` : html`<p class="loading">${t("loading")}</p>`;
  return html`<section aria-labelledby="tok-h" class="card"><h3 id="tok-h">${t("tokens")}</h3>
    <label for="tok-person">${t("choosePerson")}</label><select id="tok-person" value=${who} onChange=${(e) => setWho(e.target.value)}>
      ${doc.people.map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select>
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    ${shown && html`<div class="card token-once" role="status"><h4>${t("newToken")}: ${shown.name}</h4><p class="warn"><strong>${t("shownOnce")}</strong></p>
      <label for="new-token">${t("newToken")}</label><input type="text" id="new-token" readonly value=${shown.token}/>
      <p><button class="secondary" onClick=${copy}>${t("copy")}</button></p></div>`}
    ${list == null ? html`<p class="loading">${t("loading")}</p>` : list.length ? html`<table class="tokens"><thead><tr><th>${t("name")}</th><th>${t("expires")}</th><th>${t("lastUsed")}</th><th><span class="sr">${t("revoke")}</span></th></tr></thead>
      <tbody>${list.map((k) => html`<tr data-token=${k.id}><td>${k.name}</td><td>${k.expires_at ? dateText(k.expires_at) : t("noExpiry")}</td><td>${k.last_used_at ? when(k.last_used_at) : t("never")}</td>
        <td><button class="secondary small" aria-label=${`${t("revoke")}: ${k.name}`} onClick=${() => revoke(k.id)}>${t("revoke")}</button></td></tr>`)}</tbody></table>` : html`<p>${t("noTokens")}</p>`}
    <form onSubmit=${issue}><div class="row"><div><label for="tok-name">${t("tokenName")}</label><input type="text" id="tok-name" required maxlength="100" value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })}/>
      <${FieldErrors} errors=${msg && msg.errors} at="name"/></div>
      <div><label for="tok-exp">${t("expires")}</label><input type="date" id="tok-exp" value=${form.expires} onInput=${(e) => setForm({ ...form, expires: e.target.value })}/>
      <${FieldErrors} errors=${msg && msg.errors} at="expires_at"/></div>
      <div><button class="primary" type="submit" id="issue">${t("issue")}</button></div></div></form></section>`;
}

// ---------------------------------------------------------------------------------------------
// Running subscriptions, each handed over to another person who may hold it (the notifier says who may not)
function Running() {
  const [subs, setSubs] = useState(null); const [people, setPeople] = useState([]); const [to, setTo] = useState({}); const [msg, setMsg] = useState(null);
  const load = () => api("notifier", "/v1/subscriptions").then((s) => setSubs(s.filter((x) => x.status !== "ended"))).catch((e) => setMsg({ kind: "bad", text: e.message }));
  useEffect(() => { load(); api("intake", "/v1/admin/org/document").then((d) => setPeople(d.people)).catch(() => {}); }, []);
  const handover = async (s) => {
    if (!to[s.id]) { setMsg({ kind: "bad", text: t("chooseOwner") }); return; }
    try { const r = await api("notifier", `/v1/admin/subscriptions/${encodeURIComponent(s.id)}/handover`, { method: "POST", body: { to: to[s.id] } });
      setMsg({ kind: "ok", text: t("handedOverTo")(s.name, r.owner_name || r.owner_id) }); setTo({ ...to, [s.id]: "" }); load(); }
    catch (e) { setMsg({ kind: "bad", text: e.message }); }
  };
  return html`<section aria-labelledby="running-h" class="card"><h3 id="running-h">${t("running")}</h3>
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    ${subs == null ? html`<p class="loading">${t("loading")}</p>` : !subs.length ? html`<p>${t("noRunning")}</p>` : html`<ul class="plain running">${subs.map((s) => html`<li data-sub=${s.id}>
      <strong>${s.name}</strong> · ${t("owner")}: ${s.owner_name || s.owner_id} · ${s.paused ? t("paused") : t("active")}
      · ${t("channel")}: ${t("channels")[(s.channel || {}).type] || (s.channel || {}).type}
      <div class="row"><div><label for=${`ho-${s.id}`}>${t("handoverTo")}</label><select id=${`ho-${s.id}`} value=${to[s.id] || ""} onChange=${(e) => setTo({ ...to, [s.id]: e.target.value })}>
        <option value="">${t("chooseOwner")}</option>${people.filter((p) => p.id !== s.owner_id).map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select></div>
      <div><button class="primary" aria-label=${`${t("handover")}: ${s.name}`} onClick=${() => handover(s)}>${t("handover")}</button></div></div></li>`)}</ul>`}</section>`;
}

function Ended() {
  const [subs, setSubs] = useState(null); const [people, setPeople] = useState([]); const [to, setTo] = useState({}); const [msg, setMsg] = useState(null);
  const load = () => api("notifier", "/v1/subscriptions").then((s) => setSubs(s.filter((x) => x.status === "ended"))).catch((e) => setMsg({ kind: "bad", text: e.message }));
  useEffect(() => { load(); api("intake", "/v1/admin/org/document").then((d) => setPeople(d.people)).catch(() => {}); }, []);
  const restore = async (s) => {
    try { const r = await api("notifier", `/v1/admin/subscriptions/${encodeURIComponent(s.id)}/restore`, { method: "POST", body: to[s.id] ? { to: to[s.id] } : {} });
      setMsg({ kind: "ok", text: t("restored")(r.owner_name || r.owner_id) }); load(); }
    catch (e) { setMsg({ kind: "bad", text: e.message }); }
  };
  return html`<section aria-labelledby="subs-h" class="card"><h3 id="subs-h">${t("subs")}</h3>
    ${msg && html`<${Msg} kind=${msg.kind}>${msg.text}<//>`}
    ${subs == null ? html`<p class="loading">${t("loading")}</p>` : !subs.length ? html`<p>${t("noSubs")}</p>` : html`<ul class="plain ended">${subs.map((s) => html`<li data-sub=${s.id}>
      <strong>${s.name}</strong> · ${t("owner")}: ${s.owner_name || s.owner_id} · ${t("endedAt")} ${when(s.ended_at)}
      <div class="row"><div><label for=${`to-${s.id}`}>${t("restoreTo")}</label><select id=${`to-${s.id}`} onChange=${(e) => setTo({ ...to, [s.id]: e.target.value })}>
        <option value="">${t("defaultOwner")}</option>${people.map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select></div>
      <div><button class="primary" aria-label=${`${t("restore")}: ${s.name}`} onClick=${() => restore(s)}>${t("restore")}</button></div></div></li>`)}</ul>`}</section>`;
}

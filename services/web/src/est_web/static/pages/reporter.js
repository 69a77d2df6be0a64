// The reporter's checklist form, the outbox that keeps reports on the device until the intake took them, and
// the reporter's own list and feedback.
import { html, useState, useEffect, useCallback, LANG, t, label, itemName, own, stepName, groupedItems, pick, api, periodText, shiftWeek, Msg, PictureSummary } from "../core.js";
import { useMyReports, MyReport, unreachable } from "./mine.js";

// ---------------------------------------------------------------------------------------------
// Outbox: reports are kept on the device until the intake answered; ids are made with the draft
const OUTBOX = "est.outbox";
const readOutbox = () => JSON.parse(localStorage.getItem(OUTBOX) || "[]");
const writeOutbox = (items) => localStorage.setItem(OUTBOX, JSON.stringify(items));
let flushing = null;
export async function flushOutbox(onChange) {
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

export function Reporter({ me, checklist: current, online, tick }) {
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
  const my = useMyReports(`${tick}:${outbox.filter((e) => e.state === "accepted").length}`);
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
    const d = { report_id: r.report_id, area_id: r.area_id, answers: r.answers || {}, nothing_to_report: !!r.nothing_to_report, note: r.note || "",
                ...(r.supersedes ? { supersedes: r.supersedes, period: r.period } : {}) };
    saveDraft(d); setDraft(d); if (d.area_id !== areaId) setAreaId(d.area_id);
    setRefusal(typeof entry.error === "object" && entry.error ? entry.error : { detail: entry.error || "" });
    setMsg(null); refresh();
  };
  const correct = (r) => {
    const d = { report_id: crypto.randomUUID(), area_id: r.area_id, answers: r.answers || {},
                nothing_to_report: !!r.nothing_to_report, note: r.note || "", supersedes: r.report_id, period: r.period };
    saveDraft(d); setDraft(d); if (d.area_id !== areaId) setAreaId(d.area_id);
    setRefusal(null); setMsg(null);
    const form = document.getElementById("report-form"); if (form && form.scrollIntoView) form.scrollIntoView();
  };
  const submit = async (ev) => {
    ev.preventDefault();
    if (sending) return;
    if (!draft.nothing_to_report && Object.keys(draft.answers).length === 0) { setMsg({ kind: "bad", text: t("empty") }); return; }
    // answers only to the items of the area's checklist (a draft may hold some of an earlier version's)
    const answers = Object.fromEntries(Object.entries(draft.nothing_to_report ? {} : draft.answers)
      .filter(([code]) => checklist.items.some((i) => i.code === code)));
    const report = { ...draft, period: draft.period || area.current_period, checklist: checklist.ref, answers };
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
  // the server's list of one's own reports (from every device), and the outbox's entries it does not hold yet
  const served = my.reports || [];
  const known = new Set(served.map((r) => r.report_id));
  const mine = outbox.filter((e) => e.report.area_id === area.id && !known.has(e.report.report_id)).slice(-10).reverse();
  const refusedKeys = Object.keys(refused);
  return html`<main id="main">
    ${!online && html`<${Msg} kind="info">${t("offline")}<//>`}
    <form class="card" id="report-form" onSubmit=${submit} aria-labelledby="form-title">
      <h2 id="form-title">${t("report")}: ${area.name} · ${periodText(draft.period || area.current_period)}</h2>
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
          <button type="button" class="secondary fix" onClick=${() => backToForm(e)}>${t("fixIt")}</button>` : ""}</li>`)}
        ${served.map((r) => html`<${MyReport} key=${r.report_id} report=${r} onCorrect=${correct} onChanged=${my.reload}/>`)}</ul>
      ${my.failed && html`<p class="hint">${unreachable()}</p>`}
    </section>
    <section class="card" aria-labelledby="fb-title"><h2 id="fb-title">${t("reporterFeedback")}</h2>
      ${picture ? html`<${PictureSummary} picture=${picture}/>` : html`<p class="hint">${t("noPicture")}</p>`}</section>
  </main>`;
}

// The reporter's own reports as the intake keeps them (from any device): state, and correcting or
// withdrawing one. The reporter page shows them beside its outbox's entries not yet taken.
import { html, useState, useEffect, texts, api, periodText, pick } from "../core.js";

const t = texts({
  sv: { accepted: "Mottagen", corrected: "Rättad", withdrawn: "Tillbakatagen", late: "sen", correct: "Rätta",
        withdraw: "Ta tillbaka", confirm: "Ta tillbaka rapporten för {period}, {area}? Den räknas då inte längre i lägesbilden.",
        correction: "rättelse", nothingToReport: "inget att rapportera", failed: "Det gick inte att ta tillbaka rapporten",
        unreachable: "Dina rapporter från servern kunde inte hämtas just nu." },
  en: { accepted: "Received", corrected: "Corrected", withdrawn: "Withdrawn", late: "late", correct: "Correct",
        withdraw: "Withdraw", confirm: "Withdraw the report for {period}, {area}? It will no longer count in the picture.",
        correction: "correction", nothingToReport: "nothing to report", failed: "The report could not be withdrawn",
        unreachable: "Your reports could not be fetched from the server right now." },
});

export const stateOf = (r) => (r.withdrawn ? "withdrawn" : r.superseded_by ? "corrected" : "accepted");

// the caller's own reports from the intake, newest first; reloaded when ``tick`` changes
export function useMyReports(tick) {
  const [reports, setReports] = useState(null);
  const [failed, setFailed] = useState(false);
  const [again, setAgain] = useState(0);
  useEffect(() => {
    let gone = false;
    api("intake", "/v1/me/reports?limit=30")
      .then((r) => { if (!gone) { setReports(r.reports); setFailed(false); } })
      .catch(() => { if (!gone) setFailed(true); });
    return () => { gone = true; };
  }, [tick, again]);
  return { reports, failed, reload: () => setAgain((n) => n + 1) };
}

// one report of the server's list; ``onCorrect(report)`` opens the form with its answers
export function MyReport({ report: r, onCorrect, onChanged }) {
  const [error, setError] = useState(null);
  const state = stateOf(r);
  const withdraw = async () => {
    if (!window.confirm(t("confirm").replace("{period}", periodText(r.period)).replace("{area}", r.area_name))) return;
    try { await api("intake", `/v1/reports/${r.report_id}/withdraw`, { method: "POST" }); setError(null); }
    catch (e) { setError(pick((e.data && e.data.detail) || e.message)); }
    onChanged();
  };
  return html`<li data-report=${r.report_id} data-state=${state} data-source="server">
    <strong>${periodText(r.period)}</strong> · ${r.area_name} ·
    <span class=${"badge " + (state === "accepted" ? "ok" : "warn")}>${t(state)}</span>
    ${r.late ? html` <span class="badge warn">${t("late")}</span>` : ""}
    ${r.supersedes ? html` <span class="hint">(${t("correction")})</span>` : ""}
    ${r.nothing_to_report ? html` <span class="hint">${t("nothingToReport")}</span>` : ""}
    ${state === "accepted" ? html` <button type="button" class="secondary correct" onClick=${() => onCorrect(r)}
        aria-label=${`${t("correct")}: ${periodText(r.period)}, ${r.area_name}`}>${t("correct")}</button>
      <button type="button" class="secondary withdraw" onClick=${withdraw}
        aria-label=${`${t("withdraw")}: ${periodText(r.period)}, ${r.area_name}`}>${t("withdraw")}</button>` : ""}
    ${error ? html`<p class="field-error" role="alert">${t("failed")}: ${error}</p>` : ""}</li>`;
}

export const unreachable = () => t("unreachable");

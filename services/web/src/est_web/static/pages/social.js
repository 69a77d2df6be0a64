// Social services' page: the forfeiture notifications due to them (no personal data in the list), each opened
// with a stated purpose, which reads the protocol through the intake (every read is logged there).
import { html, useState, useEffect, LANG, api, dateText, pick, Msg } from "../core.js";
import { ReadProtocol } from "./police.js";

const T = {
  sv: { title: "Underrättelser om förverkanden", none: "Inga underrättelser.", open: "Öppna", area: "Område",
    place: "Plats", occurred: "Inträffade", received: "Mottagen", age: "Ålder", why: "Skäl",
    list: "Personuppgifter visas bara när du öppnar ett protokoll med ett angivet syfte; läsningen loggas.",
    bands: { under_15: "under 15 år", "15_17": "15–17 år", "18_19": "18–19 år" },
    reasons: { under_18: "under 18 år", requested_by_police: "polisen begärde underrättelse" } },
  en: { title: "Forfeiture notifications", none: "No notifications.", open: "Open", area: "Area",
    place: "Place", occurred: "Occurred", received: "Received", age: "Age", why: "Reason",
    list: "Personal data is shown only when you open a protocol with a stated purpose; the read is logged.",
    bands: { under_15: "under 15", "15_17": "15–17", "18_19": "18–19" },
    reasons: { under_18: "under 18", requested_by_police: "the police asked to notify" } },
};
const tt = (k) => T[LANG][k] ?? T.sv[k] ?? k;
const word = (group, code) => (T[LANG][group] || {})[code] || code;

export function Social({ tick }) {
  const [items, setItems] = useState(null); const [err, setErr] = useState(null);
  // the e-mail links to #forfeitures/<id>: that protocol is the one to open
  const linked = (/^#forfeitures\/([0-9a-f-]{36})$/i.exec(location.hash) || [])[1] || "";
  const [chosen, setChosen] = useState(linked);
  useEffect(() => { api("notifier", "/v1/social-services/notifications").then((x) => { setItems(x); setErr(null); })
    .catch((e) => setErr(pick(e.message))); }, [tick]);
  return html`<main id="main">
    <section class="card" aria-labelledby="soc-title"><h2 id="soc-title">${tt("title")}</h2>
      <p class="hint">${tt("list")}</p>
      ${err && html`<${Msg} kind="bad">${err}<//>`}
      ${items && !items.length && html`<p class="hint">${tt("none")}</p>`}
      ${items && items.length > 0 && html`<ul class="plain" id="soc-list">${items.map((n) => html`<li data-protocol=${n.protocol_id}>
        <strong>${n.area_name || n.municipality_name}</strong>${n.place ? ` · ${n.place}` : ""} ·
        ${tt("occurred")} ${dateText(n.occurred_at)} · ${tt("age")} ${word("bands", n.age_band)} · ${word("reasons", n.reason)}
        <button type="button" class="secondary" aria-label=${`${tt("open")}: ${n.area_name || ""} ${dateText(n.occurred_at)}`}
          onClick=${() => setChosen(n.protocol_id)}>${tt("open")}</button></li>`)}</ul>`}
    </section>
    ${chosen && html`<${ReadProtocol} initialId=${chosen}/>`}
  </main>`;
}

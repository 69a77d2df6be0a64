// The municipality's picture on a map: each area's outline (from the organisation file, WGS 84) drawn as SVG,
// coloured by its level, and an area's places as points sized by how often the picture names them. No tiles
// and no other origin: the app's Content-Security-Policy allows none, and municipalities' networks often block
// them. The heatmap beside it is the table alternative.
import { html, texts, t as common } from "../core.js";

const t = texts({
  sv: {
    map: "Karta", table: "Tabell", view: "Visa som", mapOf: "Karta över områdena", placesOf: (n) => `Platser i ${n}`, noMap: "Saknar karta",
    noPlace: "Saknar plats på kartan", level: "nivå", noReports: "inga rapporter", mentions: (n) => `${n} ${n === 1 ? "omnämnande" : "omnämnanden"}`,
    legend: "Teckenförklaring", legendNone: "ingen rapport", choose: "Välj ett område på kartan för att se dess platser.",
  },
  en: {
    map: "Map", table: "Table", view: "Show as", mapOf: "Map of the areas", placesOf: (n) => `Places in ${n}`, noMap: "No map for",
    noPlace: "Not on the map", level: "level", noReports: "no reports", mentions: (n) => `${n} ${n === 1 ? "mention" : "mentions"}`,
    legend: "Legend", legendNone: "no report", choose: "Choose an area on the map to see its places.",
  },
});

const W = 640, PAD = 16;
const polygons = (g) => (!g ? [] : g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : []);

// equirectangular, x scaled by cos(latitude) at the middle: true enough for a municipality
function projection(points) {
  const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
  const west = Math.min(...lons), east = Math.max(...lons), south = Math.min(...lats), north = Math.max(...lats);
  const k = Math.cos(((south + north) / 2) * Math.PI / 180);
  const dx = Math.max((east - west) * k, 1e-6), dy = Math.max(north - south, 1e-6);
  const s = (W - 2 * PAD) / Math.max(dx, dy * 1.25);
  const H = Math.round(dy * s + 2 * PAD);
  const width = Math.round(dx * s + 2 * PAD);
  return { width: Math.max(width, 200), height: Math.max(H, 160), at: ([lon, lat]) => [PAD + (lon - west) * k * s, PAD + (north - lat) * s] };
}

const pathOf = (g, at) => polygons(g).map((rings) => rings.map((ring) => "M" + ring.map((p) => at(p).map((v) => v.toFixed(1)).join(",")).join("L") + "Z").join("")).join("");

// where an area's name goes: the middle of its largest outer ring's points
function labelAt(g, at) {
  const outer = polygons(g).map((rings) => rings[0] || []).sort((a, b) => b.length - a.length)[0] || [];
  const pts = outer.slice(0, -1).map(at);
  if (!pts.length) return [0, 0];
  return [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
}

/** An area's level for the map: its highest item level (itemLevel: the heatmap's cell level), null without reports. */
export function areaLevel(pic, itemLevel) {
  if (!pic || !pic.reports) return null;
  const levels = Object.values(pic.items || {}).map(itemLevel).filter((v) => v != null);
  return levels.length ? Math.max(0, Math.min(3, Math.max(...levels))) : 0;
}

const levelWords = (lv) => (lv == null ? t("noReports") : `${t("level")} ${lv} – ${common("levels")[lv]}`);

/** How often the picture names each place, over all its items (``items[code].places``). */
export function placeCounts(pic) {
  const out = {};
  for (const it of Object.values((pic && pic.items) || {})) for (const [p, n] of Object.entries(it.places || {})) out[p] = (out[p] || 0) + n;
  return out;
}

function Legend() {
  return html`<ul class="legend map-legend" aria-label=${t("legend")}>${[0, 1, 2, 3].map((n) => html`<li><i class=${"lvl-" + n} aria-hidden="true"></i>${n} ${common("levels")[n]}</li>`)}
    <li><i class="lvl-none" aria-hidden="true"></i>${t("legendNone")}</li></ul>`;
}

function activate(e, f) {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); f(); }
}

/** The map of a municipality's areas, and below it the chosen area's places.
 * ``areas``: /v1/me's areas (geometry, places, place_locations); ``pictures``: the municipality picture's areas. */
export function MunicipalityMap({ areas, pictures, itemLevel, selected, onSelect }) {
  const pic = (id) => (pictures || []).find((p) => p.area_id === id);
  const mapped = (areas || []).filter((a) => polygons(a.geometry).length);
  const missing = (areas || []).filter((a) => !polygons(a.geometry).length && pic(a.id));
  const points = mapped.flatMap((a) => polygons(a.geometry).flatMap((rings) => rings[0] || []));
  const chosen = mapped.find((a) => a.id === selected);
  return html`<div class="map" id="map">
    <${Legend}/>
    ${points.length ? (() => {
      const pr = projection(points);
      return html`<svg viewBox=${`0 0 ${pr.width} ${pr.height}`} role="group" aria-label=${t("mapOf")} class="map-svg">
        ${mapped.map((a) => {
          const lv = areaLevel(pic(a.id), itemLevel), name = a.name;
          return html`<path d=${pathOf(a.geometry, pr.at)} class=${"area " + (lv == null ? "lvl-none" : "lvl-" + lv) + (selected === a.id ? " chosen" : "")}
            data-area=${a.id} data-level=${lv == null ? "" : lv} tabindex="0" role="button" aria-pressed=${selected === a.id ? "true" : "false"}
            aria-label=${`${name}: ${levelWords(lv)}`} onClick=${() => onSelect(a.id)} onKeyDown=${(e) => activate(e, () => onSelect(a.id))}><title>${name}: ${levelWords(lv)}</title></path>`;
        })}
        ${mapped.map((a) => { const [x, y] = labelAt(a.geometry, pr.at);
          return html`<text x=${x.toFixed(1)} y=${y.toFixed(1)} class="area-name" text-anchor="middle" aria-hidden="true">${a.name}</text>`; })}
      </svg>`;
    })() : ""}
    ${missing.length ? html`<p class="hint" id="map-missing">${t("noMap")}: ${missing.map((a) => a.name).join(", ")}</p>` : ""}
    ${chosen ? html`<${AreaMap} area=${chosen} pic=${pic(chosen.id)}/>` : mapped.length ? html`<p class="hint">${t("choose")}</p>` : ""}
  </div>`;
}

/** One area's outline with its places as points, each sized and labelled by how often the picture names it. */
export function AreaMap({ area, pic }) {
  const counts = placeCounts(pic);
  const located = (area.places || []).filter((p) => area.place_locations && area.place_locations[p]);
  const unplaced = (area.places || []).filter((p) => !located.includes(p));
  const pr = projection([...polygons(area.geometry).flatMap((rings) => rings[0] || []), ...located.map((p) => area.place_locations[p])]);
  const most = Math.max(1, ...located.map((p) => counts[p] || 0));
  return html`<section class="area-map" id="area-map" aria-labelledby="area-map-title">
    <h3 id="area-map-title">${t("placesOf")(area.name)}</h3>
    <svg viewBox=${`0 0 ${pr.width} ${pr.height}`} role="group" aria-label=${t("placesOf")(area.name)} class="map-svg">
      <path d=${pathOf(area.geometry, pr.at)} class="area lvl-none" aria-hidden="true"/>
      ${located.map((p) => { const [x, y] = pr.at(area.place_locations[p]), n = counts[p] || 0, r = 5 + 14 * Math.sqrt(n / most);
        return html`<g class="place" data-place=${p} data-count=${n} tabindex="0" role="img" aria-label=${`${p}: ${t("mentions")(n)}`}>
          <circle cx=${x.toFixed(1)} cy=${y.toFixed(1)} r=${r.toFixed(1)}/>
          <text x=${x.toFixed(1)} y=${(y - r - 4).toFixed(1)} text-anchor="middle" aria-hidden="true">${p} (${n})</text></g>`; })}
    </svg>
    ${unplaced.length ? html`<p class="hint" id="places-missing">${t("noPlace")}: ${unplaced.map((p) => `${p} (${counts[p] || 0})`).join(", ")}</p>` : ""}
  </section>`;
}

/** The dashboard's "Karta / Tabell" switch (the table is the heatmap). */
export function ViewToggle({ view, onView }) {
  const b = (v, name) => html`<button type="button" class=${view === v ? "primary" : "secondary"} aria-pressed=${view === v ? "true" : "false"} id=${"view-" + v} onClick=${() => onView(v)}>${name}</button>`;
  return html`<div class="view-toggle" role="group" aria-label=${t("view")}>${b("map", t("map"))} ${b("table", t("table"))}</div>`;
}

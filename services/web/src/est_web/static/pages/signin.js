// Signing in: the demo's people to pick from when the demo is on, else the personal-token form.
// The token is posted once to the gateway, which keeps it in the server-side session; the page keeps nothing.
import { html, useState, useEffect, texts, pick, Msg, signInWithToken, signInMethods, demoPeople, signInAsDemo } from "../core.js";

const T = texts({
  sv: {
    signin: "Logga in", token: "Din åtkomstnyckel (token)", badToken: "Nyckeln gäller inte.",
    welcome: "Logga in med den åtkomstnyckel du fått av kommunens samordnare.",
    demo: "Demo: logga in som", demoHint: "Det här är en demo. Välj vem du vill vara – ingen nyckel behövs.",
    tooMany: "För många misslyckade försök. Vänta en stund och försök igen.",
    oidc: "Logga in med organisationens konto", orToken: "eller med en åtkomstnyckel",
    failed: { "unknown-person": "Kontot du loggade in med hör inte till någon i organisationen. Be kommunens administratör lägga till dig (med samma e-postadress).",
      unavailable: "Organisationens inloggningstjänst svarar inte just nu. Försök igen om en stund.",
      failed: "Inloggningen kunde inte slutföras. Börja om här." },
    roles: { reporter: "rapportör", key_function: "nyckelfunktion", beredningsgrupp: "beredningsgrupp", styrgrupp: "styrgrupp",
      police: "polis", social_services: "socialtjänst", admin: "administratör" },
  },
  en: {
    signin: "Sign in", token: "Your access token", badToken: "The token is not valid.",
    welcome: "Sign in with the access token your municipality's coordinator gave you.",
    demo: "Demo: sign in as", demoHint: "This is a demo. Choose who you want to be – no token needed.",
    tooMany: "Too many failed attempts. Wait a while and try again.",
    oidc: "Sign in with your organisation's account", orToken: "or with an access token",
    failed: { "unknown-person": "The account you signed in with belongs to nobody in the organisation. Ask the municipality's administrator to add you (with the same e-mail address).",
      unavailable: "The organisation's sign-in service does not answer right now. Try again shortly.",
      failed: "The sign-in could not be completed. Start again here." },
    roles: { reporter: "reporter", key_function: "key function", beredningsgrupp: "preparatory group", styrgrupp: "steering group",
      police: "police", social_services: "social services", admin: "administrator" },
  },
});
const roleNames = (roles) => (roles || []).map((r) => T("roles")[r] || r).join(", ");

// the gateway sends a browser whose sign-in at the organisation's provider failed to #sign-in-failed/<reason>
function providerFailure() {
  const m = /^#sign-in-failed\/([a-z-]+)$/.exec(location.hash);
  if (!m) return "";
  history.replaceState(null, "", location.pathname);
  return T("failed")[m[1]] || T("failed").failed;
}

export function SignIn({ onIn }) {
  const [value, setValue] = useState(""); const [err, setErr] = useState(providerFailure); const [people, setPeople] = useState(null);
  const [oidc, setOidc] = useState(false);
  useEffect(() => { signInMethods().then((m) => { setOidc(!!m.oidc); return m.demo ? demoPeople().then((d) => setPeople(d.people || [])) : setPeople([]); })
    .catch(() => setPeople([])); }, []);
  const failed = (e) => setErr(e.status === 401 ? T("badToken") : e.status === 429 ? T("tooMany") : pick(e.message));
  const submit = async (ev) => {
    ev.preventDefault(); setErr("");
    try { const s = await signInWithToken(value.trim()); setValue(""); onIn(s.me); } catch (e) { failed(e); }
  };
  const asDemo = async (id) => { setErr(""); try { onIn((await signInAsDemo(id)).me); } catch (e) { failed(e); } };
  if (people === null) return html`<main id="main"><p class="loading">…</p></main>`;
  if (people.length) return html`<main id="main"><div class="card" style="max-width:32rem;margin:2rem auto">
    <h2>${T("demo")}</h2><p class="hint">${T("demoHint")}</p>
    <ul class="demo-people" aria-label=${T("demo")}>${people.map((p) => html`<li>
      <button type="button" data-person=${p.person_id} onClick=${() => asDemo(p.person_id)}>
        <strong>${p.name}</strong>${p.actor_name ? ` · ${p.actor_name}` : ""} <span class="hint">(${roleNames(p.roles)})</span></button></li>`)}</ul>
    ${err && html`<${Msg} kind="bad">${err}<//>`}</div></main>`;
  return html`<main id="main"><div class="card" style="max-width:28rem;margin:2rem auto">
    <h2>${T("signin")}</h2>
    ${oidc && html`<p><a id="oidc-sign-in" class="button primary" href="/session/oidc">${T("oidc")}</a></p><p class="hint">${T("orToken")}</p>`}
    <p class="hint">${T("welcome")}</p>
    <form onSubmit=${submit}>
      <label for="token">${T("token")}</label>
      <input id="token" type="password" autocomplete="current-password" value=${value} onInput=${(e) => setValue(e.target.value)} required/>
      <p><button class="primary" type="submit">${T("signin")}</button></p>
      ${err && html`<${Msg} kind="bad">${err}<//>`}
    </form></div></main>`;
}

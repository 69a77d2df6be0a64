// Signing in.
import { html, useState, t, pick, api, Msg } from "../core.js";

// ---------------------------------------------------------------------------------------------
// Sign in
export function SignIn({ onIn }) {
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

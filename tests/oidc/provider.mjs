// A real OpenID provider for the tests (the OpenID-certified oidc-provider package), on loopback only.
//
// Started by tests/oidc/support.py as `node provider.mjs CONFIG.json`; the config names the port, the signing keys
// (a JWKS with private keys, RS256 and/or ES256), the users (account id -> e-mail), the audience of the access
// tokens and their lifetime. Access tokens are JWTs (RFC 9068) for the one resource server (resource indicators),
// signed with `alg`, carrying the user's `email`.
//
// Clients:
//   est-web      authorization code + PKCE (S256), redirect URIs from the config; public, or confidential
//                (client_secret_basic) when the config gives web_client_secret (a gateway holding sessions)
//   est-service  confidential client (client_secret_basic), client_credentials: a token for no person
//
// No browser is needed: an authorization request with `login_hint=<account id>` is signed in and consented to
// by /interaction/<uid> on its own (a test-only shortcut for the login form a real provider shows). Without
// login_hint, /interaction/<uid> shows a form with one field, #login (the account id, no password), for browsers;
// the consent prompt that follows the form is given on its own (the test client is first-party).
// Test-only route: GET /test/stats -> {"jwks": <how many times /jwks was fetched>}.

import * as http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const { audience, users } = config;
const alg = config.alg || 'RS256';
const ttl = config.access_token_ttl || 600;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'est-web',
      id_token_signed_response_alg: alg,
      ...(config.web_client_secret
        ? { client_secret: config.web_client_secret, token_endpoint_auth_method: 'client_secret_basic' }
        : { token_endpoint_auth_method: 'none' }),
      redirect_uris: config.redirect_uris,
      post_logout_redirect_uris: config.post_logout_redirect_uris || [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'est-service',
      client_secret: config.service_secret || 'est-service-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: config.keys },
  cookies: { keys: ['est-test-provider-cookies'] },
  scopes: ['openid', 'email', 'offline_access', 'api'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  async findAccount(_ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return { accountId: id, async claims() { return { sub: id, email: user.email, email_verified: true }; } };
  },
  async extraTokenClaims(_ctx, token) {
    const user = token.accountId && users[token.accountId];
    return user ? { email: user.email } : undefined;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, indicator) {
        if (indicator !== audience) throw new errors.InvalidTarget();
        return { scope: 'api', audience, accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg } } };
      },
    },
  },
  pkce: { required: () => true },
  ttl: { AccessToken: ttl, ClientCredentials: ttl, AuthorizationCode: 60, Interaction: 300, Session: 3600, Grant: 3600 },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; if (body.length > 10000) req.destroy(); });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  let accountId = details.params.login_hint;
  if (!accountId && req.method === 'POST') accountId = (await readForm(req)).get('login');
  // signed in already (the form above was filled in): the consent prompt that follows is given on its own
  const consentOnly = !accountId && details.prompt.name === 'consent' && details.session && details.session.accountId;
  if (consentOnly) accountId = details.session.accountId;
  if (!accountId) { // a browser without login_hint: a form asking for the account id (no password: a test provider)
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><html lang="sv"><head><title>Testinloggning</title></head><body>
<form method="post" action="/interaction/${escape(details.uid)}">
<label for="login">Konto / Account</label> <input id="login" name="login" autocomplete="username">
<button type="submit">Logga in / Sign in</button></form></body></html>`);
    return undefined;
  }
  if (!users[accountId]) {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'unknown account (test provider)',
    });
  }
  const { prompt, grantId, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  const missing = prompt.details || {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const consent = { grantId: await grant.save() };
  return provider.interactionFinished(req, res, consentOnly ? { consent } : { login: { accountId }, consent });
}

const stats = { jwks: 0 };
const callback = provider.callback();

http.createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error('interaction failed', err);
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  if (path === '/test/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  if (path === '/jwks') stats.jwks += 1;
  callback(req, res);
}).listen(config.port, '127.0.0.1', () => console.log(`oidc provider listening on ${issuer}`));

// An independent relying party: openid-client (certified by the OpenID
// Foundation) does discovery, the authorization request with PKCE, state and
// nonce, the code exchange with the client authentication the service
// registered, ID token validation (with max_age when asked) and userinfo
// (signed, and its signature checked, when asked). The Go test plays the
// browser: it reads the authorization URL on stdout, answers on stdin with the
// URL the provider redirected to, and reads the result on stdout.
//
// Usage: node client.mjs CONFIG_JSON, where the configuration names
//   issuer, client_id, redirect_uri,
//   auth: private_key_jwt (with jwk_file) | client_secret_basic | client_secret_post (with secret),
//   and optionally id_token_alg (ES256 by default), max_age (seconds),
//   prompt, userinfo_alg (a signed userinfo
//   is expected), jar (the request goes as a signed request object: the
//   provider refuses it, and the result is the error openid-client read).
import * as client from 'openid-client';
import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.argv[2]);

let key, auth;
if (cfg.auth === 'private_key_jwt' || cfg.jar) {
  const jwk = JSON.parse(readFileSync(cfg.jwk_file, 'utf8'));
  key = { key: await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']), kid: jwk.kid };
}
switch (cfg.auth) {
  case 'private_key_jwt': auth = client.PrivateKeyJwt(key); break;
  case 'client_secret_basic': auth = client.ClientSecretBasic(cfg.secret); break;
  case 'client_secret_post': auth = client.ClientSecretPost(cfg.secret); break;
  default: throw new Error(`unknown auth ${cfg.auth}`);
}
const metadata = { id_token_signed_response_alg: cfg.id_token_alg ?? 'ES256' };
if (cfg.userinfo_alg) {
  metadata.userinfo_signed_response_alg = cfg.userinfo_alg;
}
const config = await client.discovery(new URL(cfg.issuer), cfg.client_id, metadata, auth,
  { execute: [client.allowInsecureRequests] }); // loopback http in tests only
if (cfg.userinfo_alg) {
  // The signature of the userinfo JWT (and of the ID token) is checked
  // against the provider's JWKS.
  client.enableNonRepudiationChecks(config);
}

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const params = {
  redirect_uri: cfg.redirect_uri,
  scope: 'openid profile birth',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state, nonce,
};
if (cfg.max_age !== undefined) params.max_age = String(cfg.max_age);
if (cfg.prompt) params.prompt = cfg.prompt;
const url = cfg.jar
  ? await client.buildAuthorizationUrlWithJAR(config, params, key)
  : client.buildAuthorizationUrl(config, params);
console.log(JSON.stringify({ authorize: url.href }));

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const callback = (await lines.next()).value;
let tokens;
try {
  tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    maxAge: cfg.max_age,
  });
} catch (err) {
  // An error answer, read as openid-client reads it: its iss and state
  // checked first.
  console.log(JSON.stringify({ error: err.error ?? null, code: err.code ?? null, message: err.message }));
  process.exit(0);
}
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
// The userinfo answer as it travels, to tell JSON from a JWT.
const raw = await fetch(config.serverMetadata().userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
console.log(JSON.stringify({
  claims, userinfo, token_type: tokens.token_type, refresh: tokens.refresh_token ?? null,
  userinfo_type: raw.headers.get('content-type'),
}));
process.exit(0);

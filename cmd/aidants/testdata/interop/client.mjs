// An independent relying party: openid-client (certified by the OpenID
// Foundation) does discovery, the authorization request with PKCE, state and
// nonce, the code exchange with private_key_jwt, ID token validation and
// userinfo. The Go test plays the browser: it reads the authorization URL on
// stdout, answers on stdin with the URL the provider redirected to, and reads
// the result on stdout. Usage: node client.mjs ISSUER CLIENT_ID JWK_FILE REDIRECT_URI
import * as client from 'openid-client';
import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';
import { createInterface } from 'node:readline';

const [issuer, clientId, jwkFile, redirectURI] = process.argv.slice(2);
const jwk = JSON.parse(readFileSync(jwkFile, 'utf8'));
const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);

const config = await client.discovery(new URL(issuer), clientId,
  { id_token_signed_response_alg: 'ES256' },
  client.PrivateKeyJwt({ key, kid: jwk.kid }),
  { execute: [client.allowInsecureRequests] }); // loopback http in tests only

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectURI,
  scope: 'openid profile birth',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state, nonce,
});
console.log(JSON.stringify({ authorize: url.href }));

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const callback = (await lines.next()).value;
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
console.log(JSON.stringify({ claims, userinfo, token_type: tokens.token_type, refresh: tokens.refresh_token ?? null }));
process.exit(0);

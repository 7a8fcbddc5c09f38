/**
 * Sender-constraint conformance: DPoP (RFC 9449) proofs, from the kit's builder and from an
 * independent client (the `dpop` package); every RFC 9449 §4.3 check violated one at a time;
 * `htu` derivation from `Host` or `dpop.origin`; downgrades between Bearer and DPoP; server
 * nonces (§8); replay (§11.1) and a failing replay store; certificate-bound tokens (RFC 8705);
 * `senderConstraint` and `dpop.mode` policies. Identical in Express, Fastify and Koa.
 */
import { calculateThumbprint, generateKeyPair as generateDpopKeyPair, generateProof, type KeyPair } from 'dpop'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import { createDpopKey, createDpopProof, type DpopKey } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import {
  athOf,
  createClock,
  countingReplayStore,
  dpopRequest,
  forgetfulReplayStore,
  hangingReplayStore,
  htuFor,
  invalidProof,
  invalidTokenIn,
  rejectingReplayStore,
  throwingReplayStore,
  type TestClock,
} from '../support/dpop.js'
import { accept, expectAccepted, expectOutcome, expectRefusal, refuse, type Outcome } from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Fixture } from '../support/fixtures.js'
import { JWE_SHAPED_TOKEN } from '../support/tokens.js'

let fx: Fixture
/** Proof keys made by the kit. */
let es256: DpopKey
let eddsa: DpopKey
let ps256: DpopKey
let otherKey: DpopKey
/** Proof keys made by the `dpop` package (an independent client), with their `jkt` as it computes it. */
let pkgEs256: KeyPair & { jkt: string }
let pkgEd25519: KeyPair & { jkt: string }

beforeAll(async () => {
  const pkgKey = async (alg: 'ES256' | 'Ed25519'): Promise<KeyPair & { jkt: string }> => {
    const pair = await generateDpopKeyPair(alg)
    return Object.assign(pair, { jkt: await calculateThumbprint(pair.publicKey) })
  }
  ;[fx, es256, eddsa, ps256, otherKey, pkgEs256, pkgEd25519] = await Promise.all([
    createFixture(),
    createDpopKey('ES256'),
    createDpopKey('EdDSA'),
    createDpopKey('PS256'),
    createDpopKey('ES256'),
    pkgKey('ES256'),
    pkgKey('Ed25519'),
  ])
})
afterAll(() => fx?.close())

const WINDOW = 60
const PUBLIC_ORIGIN = 'https://orders.example.org'
const SECOND_ORIGIN = 'https://api.example.org:8443'
const THIRD_ORIGIN = 'https://admin.example.org'

type Config =
  | 'main'
  | 'es256Only'
  | 'origin'
  | 'nonce'
  | 'senderRequired'
  | 'dpopRequired'
  | 'dpopOff'
  | 'rejectingStore'
  | 'throwingStore'
  | 'hangingStore'
  | 'forgetfulStore'

/** What each adapter's block provides to its scenarios. */
interface Ctx {
  app: RunningApp
  apps: Record<Config, RunningApp>
  clock: TestClock
}

interface Scenario {
  title: string
  /** Default `main`. */
  config?: Config
  request: (ctx: Ctx) => Promise<CallOptions>
  outcome: () => Outcome
  /** The refusal's problem `detail` (which check fired): pins "one check at a time". */
  because?: RegExp
}

const SERVICE = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
/** A service token of the main issuer, optionally DPoP-bound (`cnf.jkt`) and/or certificate-bound. */
const token = (claims: Record<string, unknown> = {}, bind: { jkt?: string; x5tS256?: string } = {}): Promise<string> =>
  sign(
    fx.main,
    { ...SERVICE, ...claims },
    {
      ...(bind.jkt === undefined ? {} : { dpopJkt: bind.jkt }),
      ...(bind.x5tS256 === undefined ? {} : { x5tS256: bind.x5tS256 }),
    },
  )
const bound = (key: { jkt: string }, claims: Record<string, unknown> = {}): Promise<string> => token(claims, { jkt: key.jkt })

const svc = (binding: 'bearer' | 'mtls' | 'dpop' = 'dpop'): Outcome => accept({ caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'], binding })
/** Port of an app, for hand-written `htu`s. */
const portOf = (app: RunningApp): string => new URL(app.url).port

/** A request with a proof made by the `dpop` package. */
async function packageRequest(app: RunningApp, key: KeyPair & { jkt: string }, path = '/whoami', scheme = 'DPoP'): Promise<CallOptions> {
  const accessToken = await bound(key)
  return { path, authorization: `${scheme} ${accessToken}`, headers: { dpop: await generateProof(key, htuFor(app, path), 'GET', undefined, accessToken) } }
}

const VALID: Scenario[] = [
  {
    title: 'kit builder, ES256: 200 with binding "dpop"',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => svc(),
  },
  {
    title: 'kit builder, EdDSA (Ed25519): 200',
    request: async ({ app }) => dpopRequest(app, eddsa, await bound(eddsa)),
    outcome: () => svc(),
  },
  {
    title: 'kit builder, PS256: 200',
    request: async ({ app }) => dpopRequest(app, ps256, await bound(ps256)),
    outcome: () => svc(),
  },
  {
    title: 'dpop package (independent client), ES256: 200',
    request: ({ app }) => packageRequest(app, pkgEs256),
    outcome: () => svc(),
  },
  {
    title: 'dpop package (independent client), Ed25519 (fully-specified alg "Ed25519"): 200',
    request: ({ app }) => packageRequest(app, pkgEd25519),
    outcome: () => svc(),
  },
  {
    title: 'dpop package on another route (GET /orders): 200',
    request: ({ app }) => packageRequest(app, pkgEs256, '/orders'),
    outcome: () => svc(),
  },
  {
    title: 'lower-case "dpop" scheme is accepted',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { scheme: 'dpop' }),
    outcome: () => svc(),
  },
  {
    title: 'upper-case "DPOP" scheme is accepted',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { scheme: 'DPOP' }),
    outcome: () => svc(),
  },
  {
    title: 'a query string on the request is ignored by the htu check',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { path: '/orders?page=2&sort=desc' }),
    outcome: () => svc(),
  },
  {
    title: 'a query and fragment in the proof htu are ignored too',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `${htuFor(app)}?x=1#frag` } }),
    outcome: () => svc(),
  },
  {
    title: 'htu with an upper-case scheme is normalized: accepted',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: htuFor(app).replace('https:', 'HTTPS:') } }),
    outcome: () => svc(),
  },
  {
    title: 'the Host header decides the htu: Host "LOCALHOST:<port>" and a proof for https://localhost:<port>',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), {
        headers: { host: `LOCALHOST:${portOf(app)}` },
        proofOptions: { htu: `https://localhost:${portOf(app)}/whoami` },
      }),
    outcome: () => svc(),
  },
  {
    title: 'POST /orders on behalf of a user: htm POST, 200',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256, { sub: 'alice', client_id: 'web-app', scope: 'orders:write' }), { method: 'POST', path: '/orders' }),
    outcome: () => accept({ caller: { id: 'web-app', source: 'token' }, user: 'alice', scopes: ['orders:write'], binding: 'dpop' }),
  },
  {
    title: 'iat just within maxProofAgeSeconds + clock tolerance (90 s old): accepted',
    request: async ({ app, clock }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { iat: clock.freeze() - 60 - 30 } }),
    outcome: () => svc(),
  },
  {
    title: 'iat 30 s in the future (within the clock tolerance): accepted',
    request: async ({ app, clock }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { iat: clock.freeze() + 30 } }),
    outcome: () => svc(),
  },
  {
    title: 'a jwk with extra public members (kid, use): the RFC 7638 thumbprint ignores them, accepted',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { jwk: { ...es256.publicJwk, kid: 'client-key-1', use: 'sig' } } }),
    outcome: () => svc(),
  },
  {
    title: 'DPoP + certificate-bound token (both cnf members) over the right certificate: binding "dpop"',
    request: async ({ app }) =>
      dpopRequest(app, es256, await token({ sub: ID.frontend, client_id: ID.frontend }, { jkt: es256.jkt, x5tS256: fx.certs.frontend.x5tS256 }), {
        cert: fx.certs.frontend,
      }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], binding: 'dpop', peer: fx.certs.frontend }),
  },
]

/** Each breaks exactly one RFC 9449 §4.3 check (numbered as in §4.3); none may reach the replay store. */
const PROOF_CHECKS: Scenario[] = [
  {
    title: '(1) two DPoP headers',
    request: async ({ app }) => {
      const accessToken = await bound(es256)
      const proof = () => createDpopProof(es256, { method: 'GET', url: htuFor(app), accessToken })
      return dpopRequest(app, es256, accessToken, { proof: [await proof(), await proof()] })
    },
    outcome: () => invalidProof(),
    because: /more than one DPoP header/,
  },
  {
    title: '(1) no DPoP header',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proof: null }),
    outcome: () => invalidProof(),
    because: /proof missing/,
  },
  {
    title: '(1) an empty DPoP header',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proof: '' }),
    outcome: () => invalidProof(),
    because: /malformed/,
  },
  {
    title: '(2) not a JWS at all',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proof: 'not-a-proof' }),
    outcome: () => invalidProof(),
    because: /malformed/,
  },
  {
    title: '(2) five parts (JWE shape)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proof: JWE_SHAPED_TOKEN }),
    outcome: () => invalidProof(),
    because: /malformed/,
  },
  {
    title: '(2) a JWS JSON serialization instead of the compact form',
    request: async ({ app }) => {
      const [protectedHeader, payload, signature] = (await createDpopProof(es256, { method: 'GET', url: htuFor(app) })).split('.')
      return dpopRequest(app, es256, await bound(es256), { proof: JSON.stringify({ protected: protectedHeader, payload, signature }) })
    },
    outcome: () => invalidProof(),
    because: /malformed/,
  },
  {
    title: '(4) typ missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { typ: null } }),
    outcome: () => invalidProof(),
    because: /typ/,
  },
  {
    title: '(4) typ "jwt"',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { typ: 'jwt' } }),
    outcome: () => invalidProof(),
    because: /typ/,
  },
  {
    title: '(4) typ "at+jwt": the access token itself sent as the proof',
    request: async ({ app }) => {
      const accessToken = await bound(es256)
      return dpopRequest(app, es256, accessToken, { proof: accessToken })
    },
    outcome: () => invalidProof(),
    because: /typ/,
  },
  {
    title: '(5) alg "none" (unsigned)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { unsigned: true } }),
    outcome: () => invalidProof(),
    because: /malformed|algorithm/,
  },
  {
    title: '(5) alg "HS256" in the header',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { alg: 'HS256' } }),
    outcome: () => invalidProof(),
    because: /algorithm/,
  },
  {
    title: '(5) alg "ES384" on a P-256 key',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { alg: 'ES384' } }),
    outcome: () => invalidProof(),
    because: /malformed|signature/,
  },
  {
    title: '(5) alg outside dpop.algorithms (EdDSA when only ES256 is allowed)',
    config: 'es256Only',
    request: async ({ app }) => dpopRequest(app, eddsa, await bound(eddsa)),
    outcome: () => invalidProof({ dpopAlgs: 'ES256' }),
    because: /algorithm/,
  },
  {
    title: '(6) no jwk header: nothing to verify the signature with',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { omitJwk: true } }),
    outcome: () => invalidProof(),
    because: /jwk/,
  },
  {
    title: '(7) jwk with the private key (d)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { includePrivateKey: true } }),
    outcome: () => invalidProof(),
    because: /private key/,
  },
  {
    title: '(7) a symmetric jwk (kty oct, secret k)',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), { proofOptions: { jwk: { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' } } }),
    outcome: () => invalidProof(),
    because: /private key|jwk/,
  },
  {
    title: '(6) signed by another key than the embedded jwk',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { signWith: otherKey } }),
    outcome: () => invalidProof(),
    because: /signature/,
  },
  {
    title: '(6) payload changed after signing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { tamper: true } }),
    outcome: () => invalidProof(),
    because: /signature/,
  },
  {
    title: '(8) htm POST on a GET request',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htm: 'POST' } }),
    outcome: () => invalidProof(),
    because: /htm/,
  },
  {
    title: '(8) htm "get" (methods are case-sensitive)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htm: 'get' } }),
    outcome: () => invalidProof(),
    because: /htm/,
  },
  {
    title: '(3) htm missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { extraClaims: { htm: undefined } } }),
    outcome: () => invalidProof(),
    because: /malformed|htm/,
  },
  {
    title: '(9) htu of another path',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: htuFor(app, '/orders') } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) htu with a trailing slash',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `${htuFor(app)}/` } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) htu of another host',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `https://localhost:${portOf(app)}/whoami` } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) htu of another scheme (http)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: htuFor(app).replace('https:', 'http:') } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) htu of another port',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `https://127.0.0.1:${Number(portOf(app)) + 1}/whoami` } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) a relative htu',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: '/whoami' } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(3) htu missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { extraClaims: { htu: undefined } } }),
    outcome: () => invalidProof(),
    because: /malformed|htu/,
  },
  {
    title: '(9) proof made for the socket address while Host names another host',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { headers: { host: `localhost:${portOf(app)}` } }),
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(9) cross-endpoint: a proof for GET /orders sent to GET /whoami',
    request: async ({ app }) => {
      const accessToken = await bound(es256)
      const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(app, '/orders'), accessToken })
      return dpopRequest(app, es256, accessToken, { path: '/whoami', proof })
    },
    outcome: () => invalidProof(),
    because: /htu/,
  },
  {
    title: '(11) iat older than maxProofAgeSeconds + clock tolerance (91 s, frozen clock)',
    request: async ({ app, clock }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { iat: clock.freeze() - 60 - 30 - 1 } }),
    outcome: () => invalidProof(),
    because: /too old/,
  },
  {
    title: '(11) iat ten minutes old',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { iat: Math.floor(Date.now() / 1000) - 600 } }),
    outcome: () => invalidProof(),
    because: /too old/,
  },
  {
    title: '(11) iat in the future beyond the clock tolerance (31 s, frozen clock)',
    request: async ({ app, clock }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { iat: clock.freeze() + 31 } }),
    outcome: () => invalidProof(),
    because: /future/,
  },
  {
    title: '(3) iat missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { extraClaims: { iat: undefined } } }),
    outcome: () => invalidProof(),
    because: /malformed|iat/,
  },
  {
    title: '(3) iat not a number',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { extraClaims: { iat: String(Math.floor(Date.now() / 1000)) } } }),
    outcome: () => invalidProof(),
    because: /malformed|iat/,
  },
  {
    title: '(3) jti missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { jti: null } }),
    outcome: () => invalidProof(),
    because: /malformed|jti/,
  },
  {
    title: '(3) jti empty',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { jti: '' } }),
    outcome: () => invalidProof(),
    because: /jti/,
  },
  {
    title: '(12) ath missing',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { ath: null } }),
    outcome: () => invalidProof(),
    because: /ath/,
  },
  {
    title: '(12) ath of another token (bound to the same key)',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { ath: athOf(await bound(es256)) } }),
    outcome: () => invalidProof(),
    because: /ath/,
  },
  {
    title: '(12) proof jwk thumbprint != cnf.jkt (a valid proof by another key): invalid_token in the DPoP challenge',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofKey: otherKey }),
    outcome: () => invalidTokenIn('DPoP'),
    because: /another DPoP key/,
  },
  {
    title: '(12) dpop package proof by a key the token is not bound to: invalid_token',
    request: async ({ app }) => {
      const accessToken = await bound(es256)
      return { authorization: `DPoP ${accessToken}`, headers: { dpop: await generateProof(pkgEs256, htuFor(app), 'GET', undefined, accessToken) } }
    },
    outcome: () => invalidTokenIn('DPoP'),
    because: /another DPoP key/,
  },
]

const DOWNGRADE: Scenario[] = [
  {
    title: 'a DPoP-bound token (cnf.jkt) with the Bearer scheme: invalid_token in the Bearer challenge',
    request: async () => ({ token: await bound(es256) }),
    outcome: () => invalidTokenIn('Bearer'),
  },
  {
    title: 'a DPoP-bound token with the Bearer scheme and a valid proof alongside: still refused',
    request: async ({ app }) => {
      const accessToken = await bound(es256)
      return { token: accessToken, headers: { dpop: await createDpopProof(es256, { method: 'GET', url: htuFor(app), accessToken }) } }
    },
    outcome: () => invalidTokenIn('Bearer'),
  },
  {
    title: 'the DPoP scheme with a token lacking cnf.jkt (and a valid proof): invalid_token in the DPoP challenge',
    request: async ({ app }) => dpopRequest(app, es256, await token()),
    outcome: () => invalidTokenIn('DPoP'),
  },
  {
    title: 'the DPoP scheme with a certificate-bound token (no cnf.jkt) over its certificate: invalid_token',
    request: async ({ app }) =>
      dpopRequest(app, es256, await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }), { cert: fx.certs.frontend }),
    outcome: () => invalidTokenIn('DPoP'),
  },
  {
    title: 'DPoP + certificate-bound token over another certificate of the same workload: invalid_token',
    request: async ({ app }) =>
      dpopRequest(app, es256, await token({ sub: ID.frontend, client_id: ID.frontend }, { jkt: es256.jkt, x5tS256: fx.certs.frontend.x5tS256 }), {
        cert: fx.certs.frontendOtherKey,
      }),
    outcome: () => invalidTokenIn('DPoP'),
  },
  {
    title: 'DPoP + certificate-bound token without a client certificate: invalid_token',
    request: async ({ app }) =>
      dpopRequest(app, es256, await token({ sub: ID.frontend, client_id: ID.frontend }, { jkt: es256.jkt, x5tS256: fx.certs.frontend.x5tS256 })),
    outcome: () => invalidTokenIn('DPoP'),
  },
]

/** Errors after the scheme is known go in the challenge of the scheme the request used. */
const SCHEME_OF_ERROR: Scenario[] = [
  {
    title: '403 insufficient_scope for a DPoP request: the error is in the DPoP challenge',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256, { scope: 'orders:write' }), { path: '/orders' }),
    outcome: () => refuse({ status: 403, code: 'insufficient_scope', side: 'caller', scope: 'orders:read', errorScheme: 'DPoP' }),
  },
  {
    title: '403 caller_forbidden (rule.callers) for a DPoP request: the error is in the DPoP challenge',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { path: '/batch' }),
    outcome: () => refuse({ status: 403, code: 'caller_forbidden', side: 'caller', errorScheme: 'DPoP' }),
  },
  {
    title: '"Authorization: DPoP" without a token: 400 invalid_request in the DPoP challenge',
    request: async ({ app }) => ({ authorization: 'DPoP', headers: { dpop: await createDpopProof(es256, { method: 'GET', url: htuFor(app) }) } }),
    outcome: () => refuse({ status: 400, code: 'invalid_request', errorScheme: 'DPoP' }),
  },
  {
    title: '"Authorization: DPoP" with a malformed token: 400 invalid_request in the DPoP challenge',
    request: async ({ app }) => ({ authorization: 'DPoP abc$def', headers: { dpop: await createDpopProof(es256, { method: 'GET', url: htuFor(app) }) } }),
    outcome: () => refuse({ status: 400, code: 'invalid_request', errorScheme: 'DPoP' }),
  },
]

const CERT_BOUND: Scenario[] = [
  {
    title: 'certificate-bound token over its certificate: 200 with binding "mtls"',
    request: async () => ({
      cert: fx.certs.frontend,
      token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }),
    }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], binding: 'mtls', peer: fx.certs.frontend }),
  },
  {
    title: 'certificate-bound token over another certificate (same SPIFFE ID, other key): 401 invalid_token',
    request: async () => ({
      cert: fx.certs.frontendOtherKey,
      token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }),
    }),
    outcome: () => invalidTokenIn('Bearer'),
  },
  {
    title: 'certificate-bound token without a client certificate: 401 invalid_token',
    request: async () => ({ token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }) }),
    outcome: () => invalidTokenIn('Bearer'),
  },
]

const ORIGIN: Scenario[] = [
  {
    title: 'a proof for the configured public origin is accepted although Host is 127.0.0.1:<port>',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `${PUBLIC_ORIGIN}/whoami` } }),
    outcome: () => svc(),
  },
  {
    title: 'a proof for the Host-derived URL is refused when dpop.origin names another origin',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => invalidProof(),
  },
  {
    title: 'htu with the default port :443 written out is normalized: accepted',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: 'https://orders.example.org:443/whoami' } }),
    outcome: () => svc(),
  },
  {
    title: 'htu with an upper-case scheme and host is normalized: accepted',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: 'HTTPS://ORDERS.Example.ORG/whoami' } }),
    outcome: () => svc(),
  },
  {
    title: 'the path is not case-normalized: /WHOAMI is refused',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: `${PUBLIC_ORIGIN}/WHOAMI` } }),
    outcome: () => invalidProof(),
  },
  {
    title: 'htu of the public host on another port is refused',
    config: 'origin',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htu: 'https://orders.example.org:8443/whoami' } }),
    outcome: () => invalidProof(),
  },
  {
    title: 'several origins: the one matching Host applies (Host api.example.org:8443)',
    config: 'origin',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), { headers: { host: 'api.example.org:8443' }, proofOptions: { htu: `${SECOND_ORIGIN}/whoami` } }),
    outcome: () => svc(),
  },
  {
    title: 'several origins: a proof for another configured origin than the Host one is refused',
    config: 'origin',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), { headers: { host: 'api.example.org:8443' }, proofOptions: { htu: `${PUBLIC_ORIGIN}/whoami` } }),
    outcome: () => invalidProof(),
  },
  {
    title: 'several origins: Host "ADMIN.example.org" (case-insensitive) selects https://admin.example.org',
    config: 'origin',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), { headers: { host: 'ADMIN.example.org' }, proofOptions: { htu: `${THIRD_ORIGIN}/whoami` } }),
    outcome: () => svc(),
  },
  {
    title: 'several origins: Host "admin.example.org:443" (default port written out) selects https://admin.example.org',
    config: 'origin',
    request: async ({ app }) =>
      dpopRequest(app, es256, await bound(es256), { headers: { host: 'admin.example.org:443' }, proofOptions: { htu: `${THIRD_ORIGIN}/whoami` } }),
    outcome: () => svc(),
  },
]

const POLICY: Scenario[] = [
  // senderConstraint: 'required' guard-wide
  {
    title: 'senderConstraint required: a plain bearer token is refused (401 invalid_token)',
    config: 'senderRequired',
    request: async () => ({ token: await token() }),
    outcome: () => invalidTokenIn('Bearer'),
  },
  {
    title: 'senderConstraint required: a certificate-bound token is accepted',
    config: 'senderRequired',
    request: async () => ({
      cert: fx.certs.frontend,
      token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }),
    }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], binding: 'mtls', peer: fx.certs.frontend }),
  },
  {
    title: 'senderConstraint required: a DPoP-bound token with its proof is accepted',
    config: 'senderRequired',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => svc(),
  },
  {
    title: 'senderConstraint required: a plain bearer token over mTLS (not bound to it) is refused',
    config: 'senderRequired',
    request: async () => ({ cert: fx.certs.frontend, token: await token({ sub: ID.frontend, client_id: ID.frontend }) }),
    outcome: () => invalidTokenIn('Bearer'),
  },
  // rule-level senderConstraint on /constrained only
  {
    title: 'rule senderConstraint required (/constrained): a plain bearer token is refused',
    request: async () => ({ path: '/constrained', token: await token() }),
    outcome: () => invalidTokenIn('Bearer'),
  },
  {
    title: 'rule senderConstraint required: the same plain bearer token passes on /whoami',
    request: async () => ({ path: '/whoami', token: await token() }),
    outcome: () => svc('bearer'),
  },
  {
    title: 'rule senderConstraint required (/constrained): DPoP is accepted',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { path: '/constrained' }),
    outcome: () => svc(),
  },
  {
    title: 'rule senderConstraint required (/constrained): a certificate-bound token is accepted',
    request: async () => ({
      path: '/constrained',
      cert: fx.certs.frontend,
      token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }),
    }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], binding: 'mtls', peer: fx.certs.frontend }),
  },
  // dpop.mode: 'required'
  {
    title: 'dpop required: no Bearer challenge; a plain Bearer token is refused (invalid_token in DPoP)',
    config: 'dpopRequired',
    request: async () => ({ token: await token() }),
    outcome: () => refuse({ status: 401, code: 'invalid_token', bearer: false }),
  },
  {
    title: 'dpop required: a certificate-bound token with Bearer is refused too',
    config: 'dpopRequired',
    request: async () => ({
      cert: fx.certs.frontend,
      token: await token({ sub: ID.frontend, client_id: ID.frontend }, { x5tS256: fx.certs.frontend.x5tS256 }),
    }),
    outcome: () => refuse({ status: 401, code: 'invalid_token', bearer: false }),
  },
  {
    title: 'dpop required: no credentials: a bare DPoP challenge only',
    config: 'dpopRequired',
    request: async () => ({}),
    outcome: () => refuse({ status: 401, code: 'credentials_missing', bearer: false }),
  },
  {
    title: 'dpop required: a proof error is reported in the DPoP challenge, without a Bearer one',
    config: 'dpopRequired',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256), { proofOptions: { htm: 'POST' } }),
    outcome: () => refuse({ status: 401, code: 'invalid_dpop_proof', bearer: false }),
  },
  {
    title: 'dpop required: DPoP with its proof is accepted',
    config: 'dpopRequired',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => svc(),
  },
  // dpop.mode: 'off'
  {
    title: 'dpop off: the DPoP scheme gets 401 credentials_missing with no DPoP challenge',
    config: 'dpopOff',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => refuse({ status: 401, code: 'credentials_missing', dpopAlgs: null }),
  },
  {
    title: 'dpop off: no credentials: a bare Bearer challenge only',
    config: 'dpopOff',
    request: async () => ({}),
    outcome: () => refuse({ status: 401, code: 'credentials_missing', dpopAlgs: null }),
  },
  {
    title: 'dpop off: a DPoP-bound token with Bearer is still refused (invalid_token)',
    config: 'dpopOff',
    request: async () => ({ token: await bound(es256) }),
    outcome: () => refuse({ status: 401, code: 'invalid_token', dpopAlgs: null }),
  },
  {
    title: 'dpop off: a plain Bearer token is accepted',
    config: 'dpopOff',
    request: async () => ({ token: await token() }),
    outcome: () => svc('bearer'),
  },
  {
    title: 'es256Only: the DPoP challenge advertises only ES256; an ES256 proof is accepted',
    config: 'es256Only',
    request: async ({ app }) => dpopRequest(app, es256, await bound(es256)),
    outcome: () => svc(),
  },
]

const TABLES: Array<[string, Scenario[]]> = [
  ['valid DPoP proofs', VALID],
  ['downgrades and combined bindings', DOWNGRADE],
  ['the challenge that carries the error', SCHEME_OF_ERROR],
  ['certificate-bound tokens (RFC 8705)', CERT_BOUND],
  ['htu against dpop.origin', ORIGIN],
  ['senderConstraint and dpop.mode policies', POLICY],
]

describe.each(adapters)('$name: sender constraint', (adapter) => {
  const clock = createClock()
  const stores = {
    main: countingReplayStore(),
    rejecting: rejectingReplayStore(),
    throwing: throwingReplayStore(),
    hanging: hangingReplayStore(),
    forgetful: forgetfulReplayStore(),
  }
  const apps = {} as Record<Config, RunningApp>
  const ctx = (config: Config = 'main'): Ctx => ({ app: apps[config], apps, clock })
  const run = async (scenario: Scenario): Promise<void> => {
    const res = await fx.call(apps[scenario.config ?? 'main'], await scenario.request(ctx(scenario.config)))
    expectOutcome(res, scenario.outcome())
    if (scenario.because) expect(res.body.detail, 'the check that refused the proof').toMatch(scenario.because)
  }

  beforeAll(async () => {
    const base = { issuers: fx.issuerOptions.main, logger: quiet, now: clock.now }
    const options: Record<Config, CallsignOptions> = {
      main: { ...base, dpop: { replayStore: stores.main } },
      es256Only: { ...base, dpop: { algorithms: ['ES256'] } },
      origin: { ...base, dpop: { origin: [PUBLIC_ORIGIN, SECOND_ORIGIN, THIRD_ORIGIN] } },
      nonce: { ...base, dpop: { nonce: { secret: 'a-secret-of-at-least-32-bytes-length!', windowSeconds: WINDOW } } },
      senderRequired: { ...base, senderConstraint: 'required' },
      dpopRequired: { ...base, dpop: { mode: 'required' } },
      dpopOff: { ...base, dpop: { mode: 'off' } },
      rejectingStore: { ...base, dpop: { replayStore: stores.rejecting } },
      throwingStore: { ...base, dpop: { replayStore: stores.throwing } },
      hangingStore: { ...base, dpop: { replayStore: stores.hanging, replayStoreTimeoutMs: 100 } },
      forgetfulStore: { ...base, dpop: { replayStore: stores.forgetful } },
    }
    const started = await Promise.all(Object.entries(options).map(async ([config, opts]) => [config, await fx.start(adapter, opts)] as const))
    for (const [config, app] of started) apps[config as Config] = app
  })
  afterEach(() => clock.release())

  for (const [name, table] of TABLES) {
    describe(name, () => {
      for (const scenario of table) it(scenario.title, () => run(scenario))
    })
  }

  describe('RFC 9449 §4.3 checks, one at a time: 401 invalid_dpop_proof, replay store never reached', () => {
    for (const scenario of PROOF_CHECKS)
      it(scenario.title, async () => {
        const before = stores.main.calls
        await run(scenario)
        expect(stores.main.calls, 'a refused proof must not reach the replay store').toBe(before)
      })
  })

  describe('replay (RFC 9449 §11.1)', () => {
    it('the same proof twice: first 200, second 401 invalid_dpop_proof', async () => {
      const request = await dpopRequest(apps.main, es256, await bound(es256))
      expectOutcome(await fx.call(apps.main, request), svc())
      expectOutcome(await fx.call(apps.main, request), invalidProof())
    })

    it('a dpop-package proof twice: first 200, second 401', async () => {
      const request = await packageRequest(apps.main, pkgEd25519)
      expectOutcome(await fx.call(apps.main, request), svc())
      expectOutcome(await fx.call(apps.main, request), invalidProof())
    })

    it('the same proof with a fresh token bound to the same key: refused (ath), and the proof stays used', async () => {
      const request = await dpopRequest(apps.main, es256, await bound(es256))
      expectOutcome(await fx.call(apps.main, request), svc())
      const other = await bound(es256)
      expectOutcome(await fx.call(apps.main, { ...request, authorization: `DPoP ${other}` }), invalidProof())
    })

    it('a new proof reusing the jti of an accepted one (same key, other endpoint): refused as a replay', async () => {
      const jti = `jti-${Math.random().toString(36).slice(2)}`
      expectOutcome(await fx.call(apps.main, await dpopRequest(apps.main, es256, await bound(es256), { proofOptions: { jti } })), svc())
      expectOutcome(
        await fx.call(apps.main, await dpopRequest(apps.main, es256, await bound(es256), { path: '/orders', proofOptions: { jti } })),
        invalidProof(),
      )
    })

    it('the same jti under another key is not a replay (identifiers are per key)', async () => {
      const jti = `jti-${Math.random().toString(36).slice(2)}`
      expectOutcome(await fx.call(apps.main, await dpopRequest(apps.main, es256, await bound(es256), { proofOptions: { jti } })), svc())
      expectOutcome(await fx.call(apps.main, await dpopRequest(apps.main, otherKey, await bound(otherKey), { proofOptions: { jti } })), svc())
    })

    it('the same proof sent concurrently five times: exactly one 200', async () => {
      const request = await dpopRequest(apps.main, es256, await bound(es256))
      const results = await Promise.all(Array.from({ length: 5 }, () => fx.call(apps.main, request)))
      expect(results.map((r) => r.status).sort()).toEqual([200, 401, 401, 401, 401])
      for (const res of results) expectOutcome(res, res.status === 200 ? svc() : invalidProof())
    })

    it('cross-endpoint: a proof used on GET /orders, then replayed to GET /whoami: 200 then 401', async () => {
      const accessToken = await bound(es256)
      const proof = await createDpopProof(es256, { method: 'GET', url: htuFor(apps.main, '/orders'), accessToken })
      expectOutcome(await fx.call(apps.main, await dpopRequest(apps.main, es256, accessToken, { path: '/orders', proof })), svc())
      expectOutcome(await fx.call(apps.main, await dpopRequest(apps.main, es256, accessToken, { path: '/whoami', proof })), invalidProof())
    })

    it('once the jti is forgotten (store TTL over), the replay is refused by iat: the proof is too old by then', async () => {
      const request = await dpopRequest(apps.forgetfulStore, es256, await bound(es256), { proofOptions: { iat: clock.freeze() } })
      expectOutcome(await fx.call(apps.forgetfulStore, request), svc())
      const reachedStore = stores.forgetful.calls
      clock.advance(60 + 30 + 1)
      expectOutcome(await fx.call(apps.forgetfulStore, request), invalidProof())
      expect(stores.forgetful.calls, 'refused by iat before the store').toBe(reachedStore)
    })
  })

  describe('server nonces (RFC 9449 §8)', () => {
    const nonceRefusal = (): Outcome => refuse({ status: 401, code: 'use_dpop_nonce', errorScheme: 'DPoP' })
    /** Call the nonce app without a nonce: 401 use_dpop_nonce; returns the nonce it hands out. */
    const fetchNonce = async (): Promise<string> => {
      const res = await fx.call(apps.nonce, await dpopRequest(apps.nonce, es256, await bound(es256)))
      expectOutcome(res, nonceRefusal())
      const nonce = res.headers['dpop-nonce']
      expect(nonce).toEqual(expect.stringMatching(/^[\x21-\x7e]+$/))
      return nonce as string
    }

    it('a proof without nonce: 401 use_dpop_nonce with a DPoP-Nonce; the retry with it: 200 carrying a DPoP-Nonce', async () => {
      const nonce = await fetchNonce()
      const res = await fx.call(apps.nonce, await dpopRequest(apps.nonce, es256, await bound(es256), { proofOptions: { nonce } }))
      expectOutcome(res, svc())
      expect(res.headers['dpop-nonce']).toEqual(expect.stringMatching(/^[\x21-\x7e]+$/))
    })

    it('the same flow with the dpop package as the client', async () => {
      const nonce = await fetchNonce()
      const accessToken = await bound(pkgEs256)
      const res = await fx.call(apps.nonce, {
        authorization: `DPoP ${accessToken}`,
        headers: { dpop: await generateProof(pkgEs256, htuFor(apps.nonce), 'GET', nonce, accessToken) },
      })
      expectOutcome(res, svc())
      expect(typeof res.headers['dpop-nonce']).toBe('string')
    })

    it('a forged nonce: 401 use_dpop_nonce', async () => {
      const nonce = await fetchNonce()
      const [slice] = nonce.split('.')
      for (const forged of [`${slice}.AAAAAAAAAAAAAAAAAAAAAA`, 'made-up-nonce', `${nonce}x`]) {
        const res = await fx.call(apps.nonce, await dpopRequest(apps.nonce, es256, await bound(es256), { proofOptions: { nonce: forged } }))
        expectOutcome(res, nonceRefusal())
        expect(typeof res.headers['dpop-nonce']).toBe('string')
      }
    })

    it('a nonce of the previous window is still accepted', async () => {
      clock.freeze()
      const nonce = await fetchNonce()
      clock.advance(WINDOW)
      const res = await fx.call(apps.nonce, await dpopRequest(apps.nonce, es256, await bound(es256), { proofOptions: { nonce, iat: clock.now() / 1000 } }))
      expectOutcome(res, svc())
    })

    it('a nonce from two windows ago is refused', async () => {
      clock.freeze()
      const nonce = await fetchNonce()
      clock.advance(2 * WINDOW)
      const res = await fx.call(apps.nonce, await dpopRequest(apps.nonce, es256, await bound(es256), { proofOptions: { nonce, iat: clock.now() / 1000 } }))
      expectOutcome(res, nonceRefusal())
      expect(res.headers['dpop-nonce']).not.toBe(nonce)
    })

    it('a Bearer call on the same guard is served without a DPoP-Nonce', async () => {
      const res = await fx.call(apps.nonce, { token: await token() })
      expectOutcome(res, svc('bearer'))
      expect(res.headers).not.toHaveProperty('dpop-nonce')
    })

    it('without nonces configured, accepted DPoP responses carry no DPoP-Nonce', async () => {
      const res = await fx.call(apps.main, await dpopRequest(apps.main, es256, await bound(es256)))
      expectOutcome(res, svc())
      expect(res.headers).not.toHaveProperty('dpop-nonce')
    })
  })

  describe('replay store outage: fail closed', () => {
    it('markUsed rejects: 503 replay_store_unavailable with Retry-After, never 200', async () => {
      const request = await dpopRequest(apps.rejectingStore, es256, await bound(es256))
      const before = stores.rejecting.calls
      for (let attempt = 0; attempt < 2; attempt++) {
        const res = await fx.call(apps.rejectingStore, request)
        expectRefusal(res, { status: 503, code: 'replay_store_unavailable' })
      }
      expect(stores.rejecting.calls).toBe(before + 2)
    })

    it('markUsed throws synchronously: 503 replay_store_unavailable', async () => {
      const before = stores.throwing.calls
      expectRefusal(await fx.call(apps.throwingStore, await dpopRequest(apps.throwingStore, es256, await bound(es256))), {
        status: 503,
        code: 'replay_store_unavailable',
      })
      expect(stores.throwing.calls).toBe(before + 1)
    })

    it('markUsed never answers: 503 after replayStoreTimeoutMs (100 ms)', async () => {
      const request = await dpopRequest(apps.hangingStore, es256, await bound(es256))
      const started = performance.now()
      const res = await fx.call(apps.hangingStore, request)
      const elapsed = performance.now() - started
      expectRefusal(res, { status: 503, code: 'replay_store_unavailable' })
      expect(elapsed).toBeGreaterThanOrEqual(90)
      expect(elapsed).toBeLessThan(3000)
    })

    it('Bearer calls do not depend on the replay store', async () => {
      expectOutcome(await fx.call(apps.rejectingStore, { token: await token() }), svc('bearer'))
    })

    it('a refused proof does not reach the failing store (401, not 503)', async () => {
      const before = stores.rejecting.calls
      expectOutcome(
        await fx.call(apps.rejectingStore, await dpopRequest(apps.rejectingStore, es256, await bound(es256), { proofOptions: { htm: 'POST' } })),
        invalidProof(),
      )
      expect(stores.rejecting.calls).toBe(before)
    })
  })

  it('an accepted DPoP call exposes the auth context like any other (issuer, claims.cnf.jkt)', async () => {
    const res = await fx.call(apps.main, await dpopRequest(apps.main, es256, await bound(es256)))
    expectAccepted(res, { caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'], binding: 'dpop', issuer: fx.main.issuer })
    expect(res.body.claims.cnf).toEqual({ jkt: es256.jkt })
  })
})

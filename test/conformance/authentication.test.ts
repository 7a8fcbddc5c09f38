/**
 * Authentication conformance: accepted calls and their auth context, missing credentials,
 * malformed requests and every kind of invalid token, identical in Express, Fastify and Koa.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import { accept, expectOutcome, invalidRequest, invalidToken, missingCredentials, served, type Outcome } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, quiet, sign, type Fixture } from '../support/fixtures.js'
import { hmacWithPublicKey, JWE_SHAPED_TOKEN, tamper, unsecuredToken } from '../support/tokens.js'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

/**
 * `main`: RFC 9068 issuer (typ `at+jwt` required), discovered via RFC 8414, keys ES256 + ES384.
 * `openid`: an issuer with a path, discovered via OpenID metadata.
 * `explicit`: a non-RFC 9068 issuer (`typ: 'jwt'`) with an explicit `jwksUri`.
 * Only ES256 is allowed guard-wide.
 */
const standardOptions = (): CallsignOptions => ({
  issuers: [fx.issuerOptions.main, fx.issuerOptions.openid, { ...fx.issuerOptions.explicit, typ: 'jwt' }],
  algorithms: ['ES256'],
  logger: quiet,
})

/** Credentials optional, custom realm. */
const optionalOptions = (): CallsignOptions => ({
  issuers: fx.issuerOptions.main,
  credentials: 'optional',
  realm: 'orders',
  logger: quiet,
})

interface Scenario {
  title: string
  request: () => Promise<CallOptions> | CallOptions
  outcome: () => Outcome
}

/** A token of the main issuer. */
const token = (claims: Record<string, unknown>, options: Parameters<typeof sign>[2] = {}): Promise<string> => sign(fx.main, claims, options)
const service = { sub: 'svc-reporting', client_id: 'svc-reporting', scope: 'orders:read' }

const ACCEPTED: Scenario[] = [
  {
    title: 'mTLS + service token: the caller is the certificate SPIFFE ID, the peer is described',
    request: async () => ({ cert: fx.certs.frontend, token: await token({ sub: ID.frontend, client_id: ID.frontend, scope: 'orders:read' }) }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.frontend, issuer: fx.main.issuer }),
  },
  {
    title: 'a token of another configured issuer (OpenID discovery, issuer with a path) is accepted',
    request: async () => ({ token: await sign(fx.openid, service) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'], issuer: fx.openid.issuer }),
  },
  {
    title: 'token only: the caller is the client_id',
    request: async () => ({ token: await token(service) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'token only without client_id: the caller is azp',
    request: async () => ({ token: await token({ azp: 'svc-azp', sub: 'svc-azp', scope: 'a b' }) }),
    outcome: () => accept({ caller: { id: 'svc-azp', source: 'token' }, scopes: ['a', 'b'] }),
  },
  {
    title: 'token only without client_id or azp: the caller is sub',
    request: async () => ({ token: await token({ sub: 'svc-sub-only' }) }),
    outcome: () => accept({ caller: { id: 'svc-sub-only', source: 'token' } }),
  },
  {
    title: 'on behalf of a user (act, no certificate): the caller is act.sub, actors nearest first',
    request: async () => ({
      token: await token({ sub: 'alice', scope: 'orders:read', act: { sub: ID.frontend, act: { sub: 'api-gateway' } } }),
    }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'token' }, user: 'alice', scopes: ['orders:read'], actors: [ID.frontend, 'api-gateway'] }),
  },
  {
    title: 'on behalf of a user (act) over mTLS: the certificate names the caller, actors are kept',
    request: async () => ({
      cert: fx.certs.worker,
      token: await token({ sub: 'alice', act: { sub: ID.worker, act: { sub: ID.frontend } } }),
    }),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, user: 'alice', actors: [ID.worker, ID.frontend], peer: fx.certs.worker }),
  },
  {
    title: 'client_id different from sub: sub is the user, client_id the caller',
    request: async () => ({ token: await token({ sub: 'bob', client_id: 'web-app', scope: 'orders:read orders:write' }) }),
    outcome: () => accept({ caller: { id: 'web-app', source: 'token' }, user: 'bob', scopes: ['orders:read', 'orders:write'] }),
  },
  {
    title: 'lower-case "bearer" scheme is accepted',
    request: async () => ({ authorization: `bearer ${await token(service)}` }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'upper-case "BEARER" scheme is accepted',
    request: async () => ({ authorization: `BEARER ${await token(service)}` }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'typ "application/at+jwt" is accepted',
    request: async () => ({ token: await token(service, { typ: 'application/at+jwt' }) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'typ "JWT" is accepted from an issuer configured with typ: \'jwt\'',
    request: async () => ({ token: await sign(fx.explicit, { sub: 'svc-legacy' }, { typ: 'JWT' }) }),
    outcome: () => accept({ caller: { id: 'svc-legacy', source: 'token' } }),
  },
  {
    title: "no typ at all is accepted from an issuer configured with typ: 'jwt'",
    request: async () => ({ token: await sign(fx.explicit, { sub: 'svc-legacy' }, { typ: null }) }),
    outcome: () => accept({ caller: { id: 'svc-legacy', source: 'token' } }),
  },
  {
    title: 'expired 10 s ago: within the default 30 s clock tolerance',
    request: async () => ({ token: await token(service, { expiresInSeconds: -10 }) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'an audience list containing this service is accepted',
    request: async () => ({ token: await token(service, { audience: ['https://billing.example.org', AUDIENCE] }) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'cnf["x5t#S256"] token over the certificate it is bound to: binding "mtls"',
    request: async () => ({
      cert: fx.certs.frontend,
      token: await token({ sub: ID.frontend, cnf: { 'x5t#S256': fx.certs.frontend.x5tS256 } }),
    }),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, binding: 'mtls', peer: fx.certs.frontend }),
  },
]

const NO_CREDENTIALS: Scenario[] = [
  {
    title: 'no Authorization header: 401 with a bare Bearer challenge',
    request: () => ({}),
    outcome: () => missingCredentials(),
  },
  {
    title: 'a client certificate alone is not enough: 401 bare challenge',
    request: () => ({ cert: fx.certs.frontend }),
    outcome: () => missingCredentials(),
  },
  {
    title: 'the guard covers every path, unknown ones included: 401 bare challenge',
    request: () => ({ path: '/no-such-route' }),
    outcome: () => missingCredentials(),
  },
  {
    title: 'Basic credentials are not Bearer credentials: 401 bare challenge',
    request: () => ({ authorization: 'Basic YWxpY2U6c2VjcmV0' }),
    outcome: () => missingCredentials(),
  },
]

const MALFORMED: Scenario[] = [
  {
    title: 'two Authorization headers: 400 invalid_request',
    request: async () => ({ authorization: [`Bearer ${await token(service)}`, `Bearer ${await token(service)}`] }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'access_token in the query string (with a valid header): 400 invalid_request',
    request: async () => ({ path: '/whoami?access_token=abc', token: await token(service) }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'access_token in the query string (no header): 400 invalid_request',
    request: async () => ({ path: `/whoami?x=1&access_token=${await token(service)}` }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'an empty Authorization header: 400 invalid_request',
    request: () => ({ authorization: '' }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'a tab instead of a space after the scheme: 400 invalid_request',
    request: async () => ({ authorization: `Bearer\t${await token(service)}` }),
    outcome: () => invalidRequest(),
  },
  {
    title: '"Bearer" without a token: 400 invalid_request',
    request: () => ({ authorization: 'Bearer' }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'a token with characters outside b64token: 400 invalid_request',
    request: () => ({ authorization: 'Bearer abc$def{}' }),
    outcome: () => invalidRequest(),
  },
  {
    title: 'a token with an inner space: 400 invalid_request',
    request: () => ({ authorization: 'Bearer abc def' }),
    outcome: () => invalidRequest(),
  },
]

const INVALID_TOKENS: Scenario[] = [
  {
    title: 'expired (beyond the clock tolerance)',
    request: async () => ({ token: await token(service, { expiresInSeconds: -120 }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'not yet valid (nbf an hour ahead)',
    request: async () => ({ token: await token(service, { notBefore: Math.floor(Date.now() / 1000) + 3600 }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'issued an hour in the future (iat)',
    request: async () => ({ token: await token(service, { issuedAt: Math.floor(Date.now() / 1000) + 3600 }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'audience of another service',
    request: async () => ({ token: await token(service, { audience: 'https://billing.example.org' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'no audience at all',
    request: async () => ({ token: await token(service, { omit: ['aud'] }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'issuer that is not configured (signed with a trusted key)',
    request: async () => ({ token: await token(service, { issuer: 'https://evil.example.com' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'issuer look-alike with a trailing slash',
    request: async () => ({ token: await token(service, { issuer: `${fx.main.issuer}/` }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'bad signature (a payload claim changed after signing)',
    request: async () => ({ token: tamper(await token(service), (claims) => (claims.scope = 'orders:read orders:admin')) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'alg "none" (unsecured JWS)',
    request: () => ({ token: unsecuredToken(fx.main, service) }),
    outcome: () => invalidToken(),
  },
  {
    title: "HS256 signed with the issuer's public JWK as secret (key confusion)",
    request: async () => ({ token: await hmacWithPublicKey(fx.main, service) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'alg outside the configured algorithms (ES384 from a published key)',
    request: async () => ({ token: await token(service, { alg: 'ES384' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'typ "JWT" from an RFC 9068 issuer (default typ mode)',
    request: async () => ({ token: await token(service, { typ: 'JWT' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'no typ from an RFC 9068 issuer (default typ mode)',
    request: async () => ({ token: await token(service, { typ: null }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'typ "dpop+jwt" (a DPoP proof) from an RFC 9068 issuer',
    request: async () => ({ token: await token(service, { typ: 'dpop+jwt' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'typ "dpop+jwt" even from an issuer configured with typ: \'jwt\'',
    request: async () => ({ token: await sign(fx.explicit, service, { typ: 'dpop+jwt' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'no exp claim',
    request: async () => ({ token: await token(service, { omit: ['exp'] }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'JWE-shaped token (5 parts)',
    request: () => ({ token: JWE_SHAPED_TOKEN }),
    outcome: () => invalidToken(),
  },
  {
    title: 'not a JWT at all',
    request: () => ({ token: 'mF_9.B5f-4.1JqM' }),
    outcome: () => invalidToken(),
  },
  {
    title: 'an unknown critical header parameter (crit)',
    request: async () => ({ token: await token(service, { header: { crit: ['urn:example:ext'], 'urn:example:ext': true } }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'scope claim as an array (the scope claim is a space-delimited string)',
    request: async () => ({ token: await token({ ...service, scope: ['orders:read'] }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'sub that is not a string',
    request: async () => ({ token: await token({ sub: 42, client_id: 'svc-reporting' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'act claim without sub',
    request: async () => ({ token: await token({ sub: 'alice', act: { iss: 'x' } }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'delegation chain deeper than 8 actors',
    request: async () => {
      let act: Record<string, unknown> | undefined
      for (let i = 0; i < 9; i++) act = { sub: `actor-${i}`, ...(act ? { act } : {}) }
      return { token: await token({ sub: 'alice', act }) }
    },
    outcome: () => invalidToken(),
  },
  {
    title: 'unknown kid',
    request: async () => ({ token: await token(service, { header: { kid: 'no-such-key' } }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'names no calling client (no sub, client_id, azp, act, certificate)',
    request: async () => ({ token: await token({ scope: 'orders:read' }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'DPoP-bound (cnf.jkt) presented as a Bearer token',
    request: async () => ({ token: await token({ ...service, cnf: { jkt: '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I' } }) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'certificate-bound (cnf["x5t#S256"]) over another certificate',
    request: async () => ({
      cert: fx.certs.frontendOtherKey,
      token: await token({ sub: ID.frontend, cnf: { 'x5t#S256': fx.certs.frontend.x5tS256 } }),
    }),
    outcome: () => invalidToken(),
  },
  {
    title: 'certificate-bound (cnf["x5t#S256"]) without a client certificate',
    request: async () => ({ token: await token({ sub: ID.frontend, cnf: { 'x5t#S256': fx.certs.frontend.x5tS256 } }) }),
    outcome: () => invalidToken(),
  },
]

const OPTIONAL_CREDENTIALS: Scenario[] = [
  {
    title: 'no credentials: a route without requireAuth is served with no auth',
    request: () => ({ path: '/public' }),
    outcome: () => served({ auth: null }),
  },
  {
    title: 'no credentials: requireAuth answers 401 with a bare challenge in the configured realm',
    request: () => ({ path: '/whoami' }),
    outcome: () => missingCredentials('orders'),
  },
  {
    title: 'Basic credentials count as none: requireAuth answers 401 bare',
    request: () => ({ path: '/orders', authorization: 'Basic YWxpY2U6c2VjcmV0' }),
    outcome: () => missingCredentials('orders'),
  },
  {
    title: 'credentials are still verified: an expired token is refused even on a public route',
    request: async () => ({ path: '/public', token: await token(service, { expiresInSeconds: -120 }) }),
    outcome: () => invalidToken('orders'),
  },
  {
    title: 'a valid token is authenticated on a protected route',
    request: async () => ({ path: '/whoami', token: await token(service) }),
    outcome: () => accept({ caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'a valid token on a route without requireAuth yields the auth context there too',
    request: async () => ({ path: '/public', token: await token(service) }),
    outcome: () => served({ auth: { caller: { id: 'svc-reporting', source: 'token' }, scopes: ['orders:read'] } }),
  },
]

describe.each(adapters)('$name: authentication', (adapter) => {
  let app: RunningApp
  beforeAll(async () => {
    app = await fx.start(adapter, standardOptions())
  })

  describe('accepted calls and their auth context', () => {
    for (const { title, request, outcome } of ACCEPTED)
      it(title, async () => {
        expectOutcome(await fx.call(app, await request()), outcome())
      })
  })

  describe('no credentials', () => {
    for (const { title, request, outcome } of NO_CREDENTIALS)
      it(title, async () => {
        expectOutcome(await fx.call(app, await request()), outcome())
      })
  })

  describe('malformed requests: 400 invalid_request', () => {
    for (const { title, request, outcome } of MALFORMED)
      it(title, async () => {
        expectOutcome(await fx.call(app, await request()), outcome())
      })
  })

  describe('invalid tokens: 401 invalid_token', () => {
    for (const { title, request, outcome } of INVALID_TOKENS)
      it(title, async () => {
        expectOutcome(await fx.call(app, await request()), outcome())
      })
  })
})

describe.each(adapters)('$name: credentials optional', (adapter) => {
  let app: RunningApp
  beforeAll(async () => {
    app = await fx.start(adapter, optionalOptions())
  })

  for (const { title, request, outcome } of OPTIONAL_CREDENTIALS)
    it(title, async () => {
      expectOutcome(await fx.call(app, await request()), outcome())
    })
})

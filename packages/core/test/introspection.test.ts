// RFC 7662 introspection against a real loopback authorization server: answer mapping, caching
// (positive, negative, never past exp), single flight, outages, token routing and option checks.
import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startIntrospectionServer, type IntrospectionServer } from '../../../test/support/introspection-server.js'
import { AuthError } from '../src/errors.js'
import { Introspector, isJwsShaped } from '../src/introspection.js'
import { resolveConfig, type IntrospectionOptions } from '../src/options.js'

const AUD = 'https://orders.example'
const CLIENT = 'spiffe://example.org/ns/web/sa/frontend'

let jwtIssuer: TestIssuer
let as: IntrospectionServer
const ISS = 'https://as.example'
let offset = 0

beforeAll(async () => {
  ;[jwtIssuer, as] = await Promise.all([startTestIssuer(), startIntrospectionServer({ issuer: ISS, audience: AUD })])
})
afterAll(async () => {
  await Promise.all([jwtIssuer?.close(), as?.close()])
})
beforeEach(() => {
  as.fault = 'none'
  as.delayMs = 0
  offset = 0
})

function introspector(extra: Partial<IntrospectionOptions> = {}, more: { tokenIssuerTokens?: 'opaque' | 'all' } = {}): Introspector {
  const config = resolveConfig({
    logger: { warn() {} },
    clockTolerance: 0,
    now: () => Date.now() + offset,
    issuers: [
      { issuer: jwtIssuer.issuer, audience: AUD, ...(more.tokenIssuerTokens ? { introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret, tokens: more.tokenIssuerTokens } } : {}) },
      { issuer: ISS, audience: AUD, jwksUri: `${ISS}/jwks`, introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret, ...extra } },
    ],
  })
  return new Introspector(config)
}

const issuerOf = (i: Introspector, token: string) => i.issuerFor(token)!

async function refusal(promise: Promise<unknown>): Promise<AuthError> {
  const error = await promise.then(() => undefined, (e: unknown) => e)
  expect(error).toBeInstanceOf(AuthError)
  return error as AuthError
}

describe('introspection: answer mapping', () => {
  it('maps an active answer into a verified token (client_id, sub, scopes, act, cnf) and authenticates with client_secret_basic', async () => {
    const i = introspector()
    const token = as.issue({ client_id: CLIENT, sub: 'alice', scope: 'orders:read orders:write orders:read', act: { sub: CLIENT }, cnf: { jkt: 'abc' } })
    const before = as.requests
    const verified = await i.introspect(token, issuerOf(i, token))
    expect(as.requests - before).toBe(1)
    expect(as.unauthenticated).toBe(0)
    expect(as.lastForm?.get('token')).toBe(token)
    expect(as.lastForm?.get('token_type_hint')).toBe('access_token')
    expect(verified.issuer.issuer).toBe(ISS)
    expect(verified.scopes).toEqual(['orders:read', 'orders:write'])
    expect(verified.actors).toEqual([CLIENT])
    expect(verified.claims).toMatchObject({ iss: ISS, client_id: CLIENT, sub: 'alice', cnf: { jkt: 'abc' }, token_type: 'Bearer', aud: AUD })
    expect(verified.claims).not.toHaveProperty('active')
  })

  it.each([
    ['unknown', () => 'x'.repeat(43)],
    ['revoked', () => { const t = as.issue({ client_id: CLIENT }); as.revoke(t); return t }],
    ['expired', () => as.issue({ client_id: CLIENT }, -10)],
  ])('refuses an %s token as not active', async (_case, make) => {
    const i = introspector()
    const token = make()
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect(error.code).toBe('invalid_token')
    expect(error.message).toBe('token is not active')
  })

  it.each([
    ['another issuer', { iss: 'https://evil.example' }, 'untrusted issuer'],
    ['another audience', { aud: 'https://billing.example' }, 'token audience does not match'],
    ['a malformed scope', { scope: ['a'] }, 'malformed scope claim'],
    ['a malformed act', { act: { sub: 7 } }, 'malformed act claim'],
    ['a malformed cnf', { cnf: 'x' }, 'malformed cnf claim'],
    ['a not-yet-valid token', { nbf: Math.floor(Date.now() / 1000) + 600 }, 'token not yet valid'],
  ])('refuses an active answer with %s', async (_case, claims, reason) => {
    const i = introspector()
    const token = as.issue({ client_id: CLIENT, ...claims } as never)
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect([error.code, error.message]).toEqual(['invalid_token', reason])
  })

  it('accepts an answer without aud (the authorization server vouches for it)', async () => {
    const bare = await startIntrospectionServer({ issuer: ISS })
    try {
      const config = resolveConfig({ logger: { warn() {} }, issuers: { issuer: ISS, audience: AUD, introspection: { endpoint: bare.endpoint, clientId: bare.clientId, clientSecret: bare.clientSecret } } })
      const i = new Introspector(config)
      const token = bare.issue({ client_id: CLIENT })
      expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
    } finally {
      await bare.close()
    }
  })
})

describe('introspection: cache and single flight', () => {
  it('reuses an active answer without a new request, and never past exp', async () => {
    const i = introspector({ cacheSeconds: 600 })
    const token = as.issue({ client_id: CLIENT }, 30)
    const before = as.requests
    await i.introspect(token, issuerOf(i, token))
    await i.introspect(token, issuerOf(i, token))
    expect(as.requests - before).toBe(1)
    offset = 31_000 // past exp on the guard's clock: asked again, and the (stale-clock) answer is now expired
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect(error.message).toBe('token expired')
    expect(as.requests - before).toBe(2)
  })

  it('expires an active answer after cacheSeconds', async () => {
    const i = introspector({ cacheSeconds: 5 })
    const token = as.issue({ client_id: CLIENT }, 300)
    const before = as.requests
    await i.introspect(token, issuerOf(i, token))
    offset = 4_000
    await i.introspect(token, issuerOf(i, token))
    expect(as.requests - before).toBe(1)
    offset = 6_000
    await i.introspect(token, issuerOf(i, token))
    expect(as.requests - before).toBe(2)
  })

  it('caches inactive answers for negativeCacheSeconds', async () => {
    const i = introspector({ negativeCacheSeconds: 10 })
    const token = 'n'.repeat(43)
    const before = as.requests
    await refusal(i.introspect(token, issuerOf(i, token)))
    await refusal(i.introspect(token, issuerOf(i, token)))
    expect(as.requests - before).toBe(1)
    offset = 11_000
    await refusal(i.introspect(token, issuerOf(i, token)))
    expect(as.requests - before).toBe(2)
  })

  it('does not cache with maxEntries 0, and bounds the cache to maxEntries', async () => {
    const none = introspector({ maxEntries: 0 })
    const token = as.issue({ client_id: CLIENT })
    let before = as.requests
    await none.introspect(token, issuerOf(none, token))
    await none.introspect(token, issuerOf(none, token))
    expect(as.requests - before).toBe(2)
    const small = introspector({ maxEntries: 2 })
    const tokens = [as.issue({ client_id: CLIENT }), as.issue({ client_id: CLIENT }), as.issue({ client_id: CLIENT })]
    for (const t of tokens) await small.introspect(t, issuerOf(small, t))
    before = as.requests
    await small.introspect(tokens[0]!, issuerOf(small, tokens[0]!)) // evicted
    await small.introspect(tokens[2]!, issuerOf(small, tokens[2]!)) // still cached
    expect(as.requests - before).toBe(1)
  })

  it('shares one request between concurrent introspections of the same token', async () => {
    const i = introspector()
    const token = as.issue({ client_id: CLIENT })
    as.delayMs = 100
    const before = as.requests
    const results = await Promise.all(Array.from({ length: 10 }, () => i.introspect(token, issuerOf(i, token))))
    expect(as.requests - before).toBe(1)
    expect(new Set(results.map((r) => r.claims.client_id))).toEqual(new Set([CLIENT]))
  })
})

describe('introspection: outages fail closed', () => {
  it.each(['error', 'garbage', 'not-rfc7662', 'hang'] as const)('answers 503 introspection_unavailable when the endpoint gives %s, and does not cache it', async (fault) => {
    const i = introspector({ timeoutSeconds: 0.3 })
    const token = as.issue({ client_id: CLIENT })
    as.fault = fault
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect(error.code).toBe('introspection_unavailable')
    expect(error.status).toBe(503)
    expect(error.retryAfterSeconds).toBeGreaterThan(0)
    as.fault = 'none'
    expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
  })

  it('answers 503 when the authorization server refuses the resource server credentials', async () => {
    const i = introspector({ clientSecret: 'wrong' })
    const token = as.issue({ client_id: CLIENT })
    const before = as.unauthenticated
    expect((await refusal(i.introspect(token, issuerOf(i, token)))).code).toBe('introspection_unavailable')
    expect(as.unauthenticated - before).toBe(1)
  })

  it('answers 503 when nothing listens', async () => {
    const config = resolveConfig({ logger: { warn() {} }, issuers: { issuer: ISS, audience: AUD, introspection: { endpoint: 'http://127.0.0.1:1/introspect', clientId: 'a', clientSecret: 'b' } } })
    const i = new Introspector(config)
    expect((await refusal(i.introspect('opaque', issuerOf(i, 'opaque')))).code).toBe('introspection_unavailable')
  })
})

describe('introspection: which tokens are introspected', () => {
  it('sends non-JWS tokens to the first issuer with introspection and leaves JWTs alone by default', async () => {
    const i = introspector()
    expect(isJwsShaped('a.b.c')).toBe(true)
    expect(isJwsShaped('a.b.c.d.e')).toBe(false)
    expect(i.issuerFor('opaque-token')?.issuer).toBe(ISS)
    expect(i.issuerFor(await jwtIssuer.signAccessToken({ sub: 'x' }, { audience: AUD }))).toBeUndefined()
  })

  it("with tokens: 'all', introspects the issuer's JWTs too (chosen by their iss), and only that issuer's", async () => {
    const i = introspector({}, { tokenIssuerTokens: 'all' })
    const jwt = await jwtIssuer.signAccessToken({ sub: 'x' }, { audience: AUD })
    expect(i.issuerFor(jwt)?.issuer).toBe(jwtIssuer.issuer)
    // Opaque tokens still go to the first issuer with introspection (in option order).
    expect(i.issuerFor('opaque')?.issuer).toBe(jwtIssuer.issuer)
    // The answer's iss must still match the issuer chosen: this AS answers as ISS.
    const token = as.issue({ client_id: CLIENT })
    expect((await refusal(i.introspect(token, i.issuerFor(jwt)!))).message).toBe('untrusted issuer')
  })
})

describe('introspection options', () => {
  const base = { endpoint: 'https://as.example/introspect', clientId: 'orders', clientSecret: 's3cret' }
  it.each<[string, unknown, string]>([
    ['not an object', 'https://as.example/introspect', '"issuers.introspection" must be an object'],
    ['an http endpoint', { ...base, endpoint: 'http://as.example/introspect' }, '"issuers.introspection.endpoint" must use https'],
    ['no clientId', { ...base, clientId: undefined }, '"issuers.introspection.clientId" must be a non-empty string'],
    ['an empty secret', { ...base, clientSecret: '' }, '"issuers.introspection.clientSecret" must be a non-empty string'],
    ['a zero timeout', { ...base, timeoutSeconds: 0 }, '"issuers.introspection.timeoutSeconds"'],
    ['a negative cache', { ...base, cacheSeconds: -1 }, '"issuers.introspection.cacheSeconds"'],
    ['a fractional maxEntries', { ...base, maxEntries: 1.5 }, '"issuers.introspection.maxEntries"'],
    ['unknown tokens mode', { ...base, tokens: 'jwt' }, '"issuers.introspection.tokens" must be one of'],
    ['an unknown key', { ...base, secret: 'x' }, '"issuers.introspection.secret" is not a known option'],
  ])('refuses %s at startup', (_case, introspection, message) => {
    expect(() => resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: introspection as IntrospectionOptions } })).toThrow(TypeError)
    expect(() => resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: introspection as IntrospectionOptions } })).toThrow(message)
  })

  it('resolves defaults', () => {
    const config = resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: base } })
    expect(config.issuers.get(ISS)?.introspection).toMatchObject({ timeoutSeconds: 5, cacheSeconds: 60, negativeCacheSeconds: 10, maxEntries: 10_000, tokens: 'opaque' })
    expect(config.issuers.get(ISS)?.introspection?.endpoint.href).toBe(base.endpoint)
  })
})

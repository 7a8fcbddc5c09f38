// RFC 7662 introspection against a real loopback authorization server: answer mapping, caching
// (positive, negative, never past exp), single flight, outages, token routing and option checks.
import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startIntrospectionServer, type IntrospectionServer } from '../../../test/support/introspection-server.js'
import { generateKeyPairSync, type webcrypto } from 'node:crypto'
import { exportPKCS8, generateKeyPair } from 'jose'
import { Introspector, isJwsShaped } from '../src/introspection.js'
import { resolveConfig, type IntrospectionOptions } from '../src/options.js'
import { refusal } from './refusal.js'

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
      {
        issuer: jwtIssuer.issuer,
        audience: AUD,
        ...(more.tokenIssuerTokens
          ? { introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret, tokens: more.tokenIssuerTokens } }
          : {}),
      },
      {
        issuer: ISS,
        audience: AUD,
        jwksUri: `${ISS}/jwks`,
        introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret, ...extra },
      },
    ],
  })
  return new Introspector(config)
}

const issuerOf = (i: Introspector, token: string) => i.issuerFor(token)!

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
    // Cached answers are shared by every request that presents the token: read-only, deeply.
    for (const part of [verified, verified.claims, verified.claims.act, verified.claims.cnf, verified.scopes, verified.actors])
      expect(Object.isFrozen(part)).toBe(true)
  })

  it.each([
    ['unknown', () => 'x'.repeat(43)],
    [
      'revoked',
      () => {
        const t = as.issue({ client_id: CLIENT })
        as.revoke(t)
        return t
      },
    ],
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
      const config = resolveConfig({
        logger: { warn() {} },
        issuers: { issuer: ISS, audience: AUD, introspection: { endpoint: bare.endpoint, clientId: bare.clientId, clientSecret: bare.clientSecret } },
      })
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
  it.each(['error', 'garbage', 'not-rfc7662', 'hang'] as const)(
    'answers 503 introspection_unavailable when the endpoint gives %s, and does not cache it',
    async (fault) => {
      const i = introspector({ timeoutSeconds: 0.3 })
      const token = as.issue({ client_id: CLIENT })
      as.fault = fault
      const error = await refusal(i.introspect(token, issuerOf(i, token)))
      expect(error.code).toBe('introspection_unavailable')
      expect(error.status).toBe(503)
      expect(error.retryAfterSeconds).toBe(2)
      as.fault = 'none'
      // For failureBackoffSeconds (default 2), new introspections are refused without a request.
      const before = as.requests
      expect((await refusal(i.introspect(token, issuerOf(i, token)))).code).toBe('introspection_unavailable')
      expect(as.requests - before).toBe(0)
      offset = 2_001
      expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
      expect(as.requests - before).toBe(1)
    },
  )

  it('keeps serving cached answers during the backoff, and never backs off with failureBackoffSeconds: 0', async () => {
    const i = introspector()
    const cached = as.issue({ client_id: CLIENT })
    await i.introspect(cached, issuerOf(i, cached))
    as.fault = 'error'
    expect((await refusal(i.introspect(as.issue({ client_id: CLIENT }), issuerOf(i, cached)))).code).toBe('introspection_unavailable')
    expect((await i.introspect(cached, issuerOf(i, cached))).claims.client_id).toBe(CLIENT)

    const eager = introspector({ failureBackoffSeconds: 0 })
    const token = as.issue({ client_id: CLIENT })
    const error = await refusal(eager.introspect(token, issuerOf(eager, token)))
    expect(error.retryAfterSeconds).toBe(1)
    as.fault = 'none'
    expect((await eager.introspect(token, issuerOf(eager, token))).claims.client_id).toBe(CLIENT)
  })

  it('answers 503 when the authorization server refuses the resource server credentials', async () => {
    const i = introspector({ clientSecret: 'wrong' })
    const token = as.issue({ client_id: CLIENT })
    const before = as.unauthenticated
    expect((await refusal(i.introspect(token, issuerOf(i, token)))).code).toBe('introspection_unavailable')
    expect(as.unauthenticated - before).toBe(1)
  })

  it('answers 503 when nothing listens', async () => {
    const config = resolveConfig({
      logger: { warn() {} },
      issuers: { issuer: ISS, audience: AUD, introspection: { endpoint: 'http://127.0.0.1:1/introspect', clientId: 'a', clientSecret: 'b' } },
    })
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

  it("with tokens: 'all', leaves a JWS-shaped token whose payload is not a JSON object to the JWT checks", async () => {
    const i = introspector({}, { tokenIssuerTokens: 'all' })
    const [header, , signature] = (await jwtIssuer.signAccessToken({ sub: 'x' }, { audience: AUD })).split('.')
    // "not json", then "[1]"
    for (const payload of ['bm90IGpzb24', 'WzFd']) expect(i.issuerFor(`${header}.${payload}.${signature}`)).toBeUndefined()
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
    ['an unknown auth', { ...base, auth: 'client_secret_post' }, '"issuers.introspection.auth" must be one of'],
    [
      'private_key_jwt without a key',
      { endpoint: base.endpoint, clientId: 'orders', auth: 'private_key_jwt' },
      '"issuers.introspection.privateKey" must be a private KeyObject',
    ],
    [
      'private_key_jwt with a non-PEM key',
      { endpoint: base.endpoint, clientId: 'orders', auth: 'private_key_jwt', privateKey: 'nope' },
      '"issuers.introspection.privateKey" is not a PEM private key',
    ],
    [
      'private_key_jwt with a public key',
      { endpoint: base.endpoint, clientId: 'orders', auth: 'private_key_jwt', privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey },
      '"issuers.introspection.privateKey" must be a private key',
    ],
    [
      'private_key_jwt with a secret too',
      { ...base, auth: 'private_key_jwt', privateKey: generateKeyPairSync('ed25519').privateKey },
      '"issuers.introspection.clientSecret" is not used',
    ],
    [
      'a privateKey with client_secret_basic',
      { ...base, privateKey: generateKeyPairSync('ed25519').privateKey },
      '"issuers.introspection.privateKey" is not used with auth: \'client_secret_basic\'',
    ],
    ['an unknown response', { ...base, response: 'xml' }, '"issuers.introspection.response" must be one of'],
  ])('refuses %s at startup', (_case, introspection, message) => {
    expect(() => resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: introspection as IntrospectionOptions } })).toThrow(TypeError)
    expect(() => resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: introspection as IntrospectionOptions } })).toThrow(message)
  })

  it('resolves defaults', () => {
    const config = resolveConfig({ issuers: { issuer: ISS, audience: AUD, introspection: base } })
    expect(config.issuers.get(ISS)?.introspection).toMatchObject({
      timeoutSeconds: 5,
      cacheSeconds: 60,
      negativeCacheSeconds: 10,
      maxEntries: 10_000,
      tokens: 'opaque',
      response: 'json',
      auth: { method: 'client_secret_basic', clientSecret: 's3cret' },
    })
    expect(config.issuers.get(ISS)?.introspection?.endpoint?.href).toBe(base.endpoint)
  })
})

describe('introspection: endpoint discovery (RFC 8414 §2)', () => {
  let self: IntrospectionServer
  beforeAll(async () => {
    self = await startIntrospectionServer({ audience: AUD }) // issuer = its own loopback origin
  })
  afterAll(async () => {
    await self?.close()
  })
  beforeEach(() => {
    self.metadata = undefined
  })
  const discovering = () =>
    new Introspector(
      resolveConfig({
        logger: { warn() {} },
        issuers: {
          issuer: self.issuer,
          audience: AUD,
          introspection: { clientId: self.clientId, clientSecret: self.clientSecret, cacheSeconds: 0, failureBackoffSeconds: 0 },
        },
      }),
    )

  it('discovers introspection_endpoint lazily, once, and uses it', async () => {
    const before = self.metadataRequests
    const i = discovering()
    expect(self.metadataRequests - before).toBe(0)
    const [a, b] = [self.issue({ client_id: CLIENT }), self.issue({ client_id: CLIENT, sub: 'bob' })]
    expect((await i.introspect(a, issuerOf(i, a))).claims.client_id).toBe(CLIENT)
    expect((await i.introspect(b, issuerOf(i, b))).claims.sub).toBe('bob')
    expect(self.metadataRequests - before).toBe(1)
  })

  it.each<[string, Record<string, unknown> | null]>([
    ['no metadata', null],
    ['metadata of another issuer', { issuer: 'http://127.0.0.1:1', introspection_endpoint: 'http://127.0.0.1:1/introspect' }],
    ['an http endpoint off loopback', { issuer: 'SELF', introspection_endpoint: 'http://as.example/introspect' }],
    ['no introspection_endpoint', { issuer: 'SELF' }],
  ])('answers 503 introspection_unavailable with %s, then retries discovery', async (_case, metadata) => {
    self.metadata = metadata && (metadata.issuer === 'SELF' ? { ...metadata, issuer: self.issuer } : metadata)
    const i = discovering()
    const token = self.issue({ client_id: CLIENT })
    const before = self.requests
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect([error.code, error.status]).toEqual(['introspection_unavailable', 503])
    expect(self.requests - before).toBe(0)
    self.metadata = undefined
    expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
  })
})

describe('introspection: private_key_jwt (RFC 7523 §2.2)', () => {
  let pk: IntrospectionServer
  let keys: Awaited<ReturnType<typeof generateKeyPair>>
  beforeAll(async () => {
    keys = await generateKeyPair('ES256', { extractable: true })
    pk = await startIntrospectionServer({ issuer: ISS, audience: AUD, clientPublicKey: keys.publicKey })
  })
  afterAll(async () => {
    await pk?.close()
  })
  const withKey = (privateKey: NonNullable<IntrospectionOptions['privateKey']>) =>
    new Introspector(
      resolveConfig({
        logger: { warn() {} },
        issuers: {
          issuer: ISS,
          audience: AUD,
          introspection: { endpoint: pk.endpoint, clientId: pk.clientId, auth: 'private_key_jwt', privateKey, maxEntries: 0 },
        },
      }),
    )

  it('authenticates with a signed client assertion (CryptoKey), a fresh jti each time, no Basic', async () => {
    const i = withKey(keys.privateKey as webcrypto.CryptoKey)
    const token = pk.issue({ client_id: CLIENT })
    const before = pk.unauthenticated
    expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
    const first = pk.lastForm?.get('client_assertion')
    expect(pk.lastForm?.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
    expect(JSON.parse(Buffer.from(first!.split('.')[1]!, 'base64url').toString())).toMatchObject({ iss: pk.clientId, sub: pk.clientId, aud: pk.endpoint })
    await i.introspect(token, issuerOf(i, token)) // the server refuses a replayed jti
    expect(pk.lastForm?.get('client_assertion')).not.toBe(first)
    expect(pk.unauthenticated - before).toBe(0)
  })

  it('accepts a PEM private key', async () => {
    const i = withKey(await exportPKCS8(keys.privateKey))
    const token = pk.issue({ client_id: CLIENT })
    expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
  })

  it('answers 503 when the assertion is signed with a key the server does not know', async () => {
    const i = withKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)
    const token = pk.issue({ client_id: CLIENT })
    const before = pk.unauthenticated
    expect((await refusal(i.introspect(token, issuerOf(i, token)))).code).toBe('introspection_unavailable')
    expect(pk.unauthenticated - before).toBe(1)
  })
})

describe('introspection: RFC 9701 JWT answers', () => {
  let signer: IntrospectionServer
  beforeAll(async () => {
    signer = await startIntrospectionServer({ audience: AUD, signAnswers: true })
  })
  afterAll(async () => {
    await signer?.close()
  })
  beforeEach(() => {
    signer.jwtHeader = {}
    signer.jwtClaims = {}
    signer.jwtForeignKey = false
  })
  const jwtIntrospector = (response: 'json' | 'jwt' = 'jwt') =>
    new Introspector(
      resolveConfig({
        logger: { warn() {} },
        issuers: {
          issuer: signer.issuer,
          audience: AUD,
          jwksUri: signer.jwksUri,
          algorithms: ['ES256'],
          introspection: { endpoint: signer.endpoint, clientId: signer.clientId, clientSecret: signer.clientSecret, response, maxEntries: 0 },
        },
      }),
    )

  it('asks for a signed answer, verifies it with the issuer keys and reads token_introspection', async () => {
    const i = jwtIntrospector()
    const token = signer.issue({ client_id: CLIENT, sub: 'alice', scope: 'orders:read' })
    const before = signer.jwtAnswers
    const verified = await i.introspect(token, issuerOf(i, token))
    expect(signer.jwtAnswers - before).toBe(1)
    expect(verified.claims).toMatchObject({ client_id: CLIENT, sub: 'alice', iss: signer.issuer })
    expect(verified.scopes).toEqual(['orders:read'])
    const inactive = 'z'.repeat(43)
    expect((await refusal(i.introspect(inactive, issuerOf(i, inactive)))).message).toBe('token is not active')
  })

  it('refuses an unsigned answer when a signed one was asked for (response: jwt)', async () => {
    const plain = await startIntrospectionServer({ audience: AUD })
    try {
      const i = new Introspector(
        resolveConfig({
          logger: { warn() {} },
          issuers: {
            issuer: plain.issuer,
            audience: AUD,
            jwksUri: signer.jwksUri,
            introspection: { endpoint: plain.endpoint, clientId: plain.clientId, clientSecret: plain.clientSecret, response: 'jwt', maxEntries: 0 },
          },
        }),
      )
      const token = plain.issue({ client_id: CLIENT })
      expect((await refusal(i.introspect(token, issuerOf(i, token)))).code).toBe('introspection_unavailable')
    } finally {
      await plain.close()
    }
  })

  it('gets plain JSON by default', async () => {
    const i = jwtIntrospector('json')
    const token = signer.issue({ client_id: CLIENT })
    const before = signer.jwtAnswers
    expect((await i.introspect(token, issuerOf(i, token))).claims.client_id).toBe(CLIENT)
    expect(signer.jwtAnswers - before).toBe(0)
  })

  it.each<[string, () => void]>([
    [
      'a wrong typ',
      () => {
        signer.jwtHeader = { typ: 'JWT' }
      },
    ],
    [
      'another iss',
      () => {
        signer.jwtClaims = { iss: 'https://evil.example' }
      },
    ],
    [
      'another aud',
      () => {
        signer.jwtClaims = { aud: 'someone-else' }
      },
    ],
    [
      'an unpublished key',
      () => {
        signer.jwtForeignKey = true
      },
    ],
    [
      'no token_introspection',
      () => {
        signer.jwtClaims = { token_introspection: 'x' }
      },
    ],
  ])('answers 503 introspection_unavailable for a signed answer with %s', async (_case, tamper) => {
    tamper()
    const i = jwtIntrospector()
    const token = signer.issue({ client_id: CLIENT })
    const error = await refusal(i.introspect(token, issuerOf(i, token)))
    expect([error.code, error.status]).toEqual(['introspection_unavailable', 503])
  })
})

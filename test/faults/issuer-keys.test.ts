/**
 * Fault injection around key selection and discovery: rotation with the default cooldown (and
 * tokens already in the verified-token cache), rotation on a quiet service (keys older than
 * cacheMaxAgeSeconds), floods of unknown `kid`s (10 000 in process over a simulated 300 s, a
 * couple of hundred over HTTP per adapter), 100 concurrent first requests, key sets that parse but
 * hold no usable key, a `jwks_uri` that is down while the metadata is fine, and metadata that must
 * not be trusted (issuer mismatch ...), each logged once per failed fetch through a capturing logger.
 *
 * Extends test/conformance/issuers.test.ts: that file covers rotation with cooldownSeconds 0,
 * a 13-request flood and 20 concurrent first requests.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuthError, createCallsign, type CallsignOptions, type IssuerOptions } from '@callsign/core'
import type { TestIssuer, TestIssuerOptions } from '@callsign/testing'
import { freePort } from '../../packages/redis/test/redis-server.js'
import { adapters, type RunningApp } from '../support/adapters.js'
import { createClock, type TestClock } from '../support/dpop.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import {
  bareRequest,
  capturingLogger,
  floodClient,
  recordingFetch,
  startScriptedServer,
  tokenWithKid,
  waitUntil,
  type CapturingLogger,
  type ScriptedServer,
} from '../support/faults.js'
import { AUDIENCE, createFixture, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

let fx: Fixture
let scripted: ScriptedServer
beforeAll(async () => {
  ;[fx, scripted] = await Promise.all([createFixture(), startScriptedServer()])
})
afterAll(async () => {
  await scripted?.close()
  await fx?.close()
})

const service = { sub: 'svc-a', client_id: 'svc-a' }
const accepted = { caller: { id: 'svc-a', source: 'token' as const } }
const unavailable = { status: 503, code: 'keys_unavailable' } as const
const invalid = { status: 401, code: 'invalid_token' } as const
const COOLDOWN = 30 // the default cooldownSeconds
const FETCH_FAILED = 'callsign: could not fetch issuer keys'

const tokenAt = (issuer: TestIssuer, clock: TestClock, extra: Parameters<typeof sign>[2] = {}): Promise<string> =>
  sign(issuer, service, { issuedAt: Math.floor(clock.now() / 1000), expiresInSeconds: 3600, ...extra })
const warningsAbout = (logger: CapturingLogger, issuer: string) => logger.warnings.filter((w) => w.message === FETCH_FAILED && w.details?.issuer === issuer)

const publicJwkOf = (pair: { publicKey: { export(options: { format: 'jwk' }): unknown } }): Record<string, string> =>
  pair.publicKey.export({ format: 'jwk' }) as Record<string, string>
const ED25519 = publicJwkOf(generateKeyPairSync('ed25519'))
const P384 = publicJwkOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }))
const RSA_2048 = publicJwkOf(generateKeyPairSync('rsa', { modulusLength: 2048 }))
const RSA_1024 = publicJwkOf(generateKeyPairSync('rsa', { modulusLength: 1024 }))
/** A random odd modulus of 8200 bits: importable, over the 8192-bit bound. */
const RSA_8200 = (() => {
  const n = randomBytes(1025)
  n[0]! |= 0x80
  n[1024]! |= 1
  return { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }
})()
/** The issuer's current public JWK (P-256, with kid, alg ES256, use sig). */
const currentJwk = (issuer: TestIssuer): Record<string, string> => issuer.publicJwks().keys.find((k) => k.kid === issuer.currentKid) as Record<string, string>
function offCurve(x: string): string {
  const octets = Buffer.from(x, 'base64url')
  octets[31]! ^= 1
  return octets.toString('base64url')
}

/**
 * JWK Sets that parse but hold no key usable by an issuer allowing ES256 and RS256, whose own key
 * is P-256: every key is published under the issuer's current kid, each unusable for one reason.
 */
const UNUSABLE_KINDS: Array<{ title: string; keys: (issuer: TestIssuer) => Array<Record<string, unknown>> }> = [
  {
    title: 'wrong kty or curve for the allowed algorithms (Ed25519, P-384)',
    keys: (issuer) => [
      { ...ED25519, kid: issuer.currentKid },
      { ...P384, kid: issuer.currentKid },
    ],
  },
  { title: 'alg not allowed (an RSA key marked PS256)', keys: (issuer) => [{ ...RSA_2048, kid: issuer.currentKid, alg: 'PS256' }] },
  { title: 'alg not fitting the key (the issuer key marked RS256)', keys: (issuer) => [{ ...currentJwk(issuer), alg: 'RS256' }] },
  { title: 'an invalid curve point (the issuer key, x changed)', keys: (issuer) => [{ ...currentJwk(issuer), x: offCurve(currentJwk(issuer).x!) }] },
  { title: 'RSA 1024', keys: (issuer) => [{ ...RSA_1024, kid: issuer.currentKid, alg: 'RS256' }] },
  { title: 'RSA over 8192 bits', keys: (issuer) => [{ ...RSA_8200, kid: issuer.currentKid, alg: 'RS256' }] },
  { title: 'not importable (EC without y)', keys: (issuer) => [{ kty: 'EC', crv: 'P-256', x: currentJwk(issuer).x, kid: issuer.currentKid }] },
  {
    title: 'the issuer key with x of 33 octets (a leading zero)',
    keys: (issuer) => [{ ...currentJwk(issuer), x: Buffer.concat([Buffer.alloc(1), Buffer.from(currentJwk(issuer).x!, 'base64url')]).toString('base64url') }],
  },
]
const UNUSABLE = [
  ...UNUSABLE_KINDS,
  {
    title: 'mixed junk: all of the above, with a symmetric and an encryption key',
    keys: (issuer: TestIssuer) => [
      ...UNUSABLE_KINDS.flatMap((kind) => kind.keys(issuer)),
      { kty: 'oct', k: 'c2VjcmV0', kid: issuer.currentKid },
      { ...currentJwk(issuer), use: 'enc' },
    ],
  },
]

describe('core, in process: unknown kid flood', () => {
  it('10 000 requests with random unknown kids over a simulated 300 s: all 401, at most one refetch per cooldown window', async () => {
    const clock = createClock()
    clock.freeze()
    const issuer = await fx.startIssuer({ discovery: 'none' })
    const fetches = recordingFetch(clock.now)
    const guard = createCallsign({ issuers: issuerOption(issuer, { explicitJwks: true }), logger: quiet, now: clock.now, fetch: fetches.fetch })
    const authenticate = (token: string) => guard.authenticate(bareRequest(`Bearer ${token}`))
    const good = await tokenAt(issuer, clock)
    expect((await authenticate(good))?.caller.id).toBe('svc-a')

    const codes = new Map<string, number>()
    for (let batch = 0; batch < 100; batch++) {
      const pending: Array<Promise<string>> = []
      for (let i = 0; i < 100; i++) {
        clock.advance(0.03) // 10 000 x 30 ms = 300 s = 10 cooldown windows
        pending.push(
          authenticate(tokenWithKid(issuer.issuer, AUDIENCE, randomUUID())).then(
            () => 'accepted',
            (error: unknown) => (error instanceof AuthError ? error.code : String(error)),
          ),
        )
      }
      for (const code of await Promise.all(pending)) codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    expect(Object.fromEntries(codes)).toEqual({ invalid_token: 10_000 })

    const at = fetches.calls.map((call) => call.at)
    for (let i = 1; i < at.length; i++)
      expect(at[i]! - at[i - 1]!, `fetch ${i} came ${at[i]! - at[i - 1]!} ms after the previous one`).toBeGreaterThanOrEqual(COOLDOWN * 1000)
    expect(at.length).toBeLessThanOrEqual(1 + 300 / COOLDOWN) // the first fetch, then at most one per window
    expect(at.length).toBeGreaterThanOrEqual(2) // refetches still happen (a real rotation would be picked up)
    expect(issuer.requestCount('/jwks.json')).toBe(at.length)
    expect((await authenticate(good))?.caller.id).toBe('svc-a') // the legitimate token never noticed
  })
})

describe('core, in process: local keys without a usable key', () => {
  it.each([
    ['inline, only an RSA 1024 key', { keys: [RSA_1024] }],
    ['inline PEM of an Ed25519 key, issuer algorithms ES256 only', 'ed25519'],
  ] as const)('%s: createCallsign throws a TypeError naming issuers[0].jwks (not a fetch failure)', (_case, jwks) => {
    const pem = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string
    const options: CallsignOptions = {
      issuers: [
        {
          issuer: 'spiffe://example.org/ns/batch/sa/worker',
          audience: AUDIENCE,
          typ: 'jwt',
          algorithms: ['ES256'],
          jwks: jwks === 'ed25519' ? pem : { keys: [...jwks.keys] },
        },
      ],
      logger: quiet,
    }
    expect(() => createCallsign(options)).toThrow(TypeError)
    expect(() => createCallsign(options)).toThrow(
      /^Callsign: "issuers\[0\]\.jwks" must hold at least one public key usable with the issuer's algorithms \(ES256\)/,
    )
  })
})

describe.each(adapters)('$name: keys and discovery faults', (adapter) => {
  const start = (issuers: IssuerOptions | IssuerOptions[], extra: Partial<CallsignOptions> = {}): Promise<RunningApp> =>
    fx.start(adapter, { issuers, logger: quiet, ...extra })

  it('rotation with the default cooldown: a new kid is refused within it, accepted after exactly one refetch past it; old kid served while published; removed kids refused after the refetch, also tokens cached before', async () => {
    const clock = createClock()
    clock.freeze()
    const issuer = await fx.startIssuer({ discovery: 'none' })
    const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: clock.now })
    const call = async (token: string) => fx.call(app, { token })
    const jwksFetches = () => issuer.requestCount('/jwks.json')

    const t1 = await tokenAt(issuer, clock) // reused all along: in the verified-token cache from its second use
    expectAccepted(await call(t1), accepted)
    expectAccepted(await call(t1), accepted)
    expect(jwksFetches()).toBe(1)

    const k2 = await issuer.rotateKeys() // k1 stays published
    clock.advance(10)
    const t2 = await tokenAt(issuer, clock, { kid: k2 })
    expectRefusal(await call(t2), invalid) // 10 s after the last fetch: within the cooldown, no refetch
    expect(jwksFetches()).toBe(1)
    clock.advance(COOLDOWN - 10)
    expectAccepted(await call(t2), accepted) // exactly one refetch
    expect(jwksFetches()).toBe(2)
    expectAccepted(await call(t1), accepted) // the old kid, still published, from the new set
    expectAccepted(await call(await tokenAt(issuer, clock, { kid: kidOf(t1) })), accepted)
    expect(jwksFetches()).toBe(2)

    const k3 = await issuer.rotateKeys({ keepPrevious: false }) // k1 and k2 leave the JWKS
    // Until a refetch the guard cannot know: the removed keys still verify (bounded by cacheMaxAgeSeconds).
    expectAccepted(await call(t1), accepted)
    clock.advance(COOLDOWN)
    expectAccepted(await call(await tokenAt(issuer, clock, { kid: k3 })), accepted) // one refetch for k3
    expect(jwksFetches()).toBe(3)
    expectRefusal(await call(t1), invalid) // cached verification dropped: its key left the set
    expectRefusal(await call(t2), invalid)
    expect(jwksFetches()).toBe(3) // and no refetch for them within the cooldown
    clock.advance(COOLDOWN)
    expectRefusal(await call(t1), invalid) // past the cooldown: one more look, still absent
    expectRefusal(await call(t2), invalid)
    expect(jwksFetches()).toBe(4)
  })

  it('unknown-kid flood over HTTP (200 requests, plain HTTP as behind a sidecar, keep-alive): all 401; no refetch within the cooldown, exactly one past it', async () => {
    const clock = createClock()
    clock.freeze()
    const issuer = await fx.startIssuer({ discovery: 'none' })
    const app = await fx.start(adapter, { issuers: issuerOption(issuer, { explicitJwks: true }), logger: quiet, now: clock.now }, { protocol: 'http' })
    const client = floodClient(fx.ca.certPem)
    try {
      const flood = async (count: number): Promise<void> => {
        const answers = await Promise.all(
          Array.from({ length: count }, () => client.get(`${app.url}/whoami`, `Bearer ${tokenWithKid(issuer.issuer, AUDIENCE, randomUUID())}`)),
        )
        for (const { status, body } of answers) expect({ status, code: (body as { code?: string }).code }).toEqual({ status: 401, code: 'invalid_token' })
      }
      const good = await tokenAt(issuer, clock)
      expect((await client.get(`${app.url}/whoami`, `Bearer ${good}`)).status).toBe(200)
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      await flood(50)
      expect(issuer.requestCount('/jwks.json')).toBe(1) // within the cooldown of the first fetch
      clock.advance(COOLDOWN)
      await flood(150)
      expect(issuer.requestCount('/jwks.json')).toBe(2) // one refetch for the whole flood
      expect((await client.get(`${app.url}/whoami`, `Bearer ${good}`)).status).toBe(200)
    } finally {
      client.close()
    }
  })

  it('100 concurrent first requests (100 connections, plain HTTP): exactly one metadata fetch and one JWKS fetch, all accepted', async () => {
    const issuer = await fx.startIssuer({ discovery: 'oauth' })
    issuer.setLatency(150)
    const app = await fx.start(adapter, { issuers: issuerOption(issuer), logger: quiet }, { protocol: 'http' })
    const token = await sign(issuer, service)
    const client = floodClient(fx.ca.certPem, 100)
    const answers = await Promise.all(Array.from({ length: 100 }, () => client.get(`${app.url}/whoami`, `Bearer ${token}`))).finally(() => client.close())
    for (const res of answers) expectAccepted(res, accepted)
    expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(1)
    expect(issuer.requestCount('/jwks.json')).toBe(1)
    expect(issuer.requestCount()).toBe(2)
  })

  it('rotation on a quiet service: keys older than cacheMaxAgeSeconds, the issuer rotated; the first token with the new kid is accepted (it waits for the refetch its request starts); concurrent first tokens share that one refetch', async () => {
    const clock = createClock()
    clock.freeze()
    const issuer = await fx.startIssuer({ discovery: 'none' })
    const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: clock.now })
    const jwksFetches = () => issuer.requestCount('/jwks.json')
    expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
    expect(jwksFetches()).toBe(1)

    clock.advance(601) // idle for longer than the default cacheMaxAgeSeconds (600)
    const k2 = await issuer.rotateKeys({ keepPrevious: false })
    expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock, { kid: k2 }) }), accepted)
    expect(jwksFetches()).toBe(2)

    clock.advance(601)
    const k3 = await issuer.rotateKeys({ keepPrevious: false })
    issuer.setLatency(100)
    const tokens = await Promise.all(Array.from({ length: 10 }, () => tokenAt(issuer, clock, { kid: k3 })))
    for (const res of await Promise.all(tokens.map((token) => fx.call(app, { token })))) expectAccepted(res, accepted)
    expect(jwksFetches()).toBe(3)
  })

  describe.concurrent('key sets that parse but hold no usable key (issuer algorithms ES256 and RS256)', () => {
    it.each(UNUSABLE)(
      '$title: 503 with Retry-After while nothing is cached; once keys are cached, the refresh that serves it changes nothing: a cached token and a new token with the cached kid are accepted',
      async ({ keys }) => {
        const clock = createClock()
        clock.freeze()
        const logger = capturingLogger()
        const issuer = await fx.startIssuer({ discovery: 'none' })
        const path = `/unusable-${randomUUID()}.json`
        const unusable = { json: { keys: keys(issuer) } }
        scripted.script(path, unusable)
        const app = await start(
          { issuer: issuer.issuer, audience: AUDIENCE, jwksUri: scripted.url(path), algorithms: ['ES256', 'RS256'] },
          {
            now: clock.now,
            logger,
            jwks: { cacheMaxAgeSeconds: 60, failureBackoffSeconds: 1 },
          },
        )
        const warnings = () => warningsAbout(logger, issuer.issuer)

        const refused = await fx.call(app, { token: await tokenAt(issuer, clock) })
        expectRefusal(refused, unavailable)
        expect(refused.headers['retry-after']).toBe('1')
        expect(warnings().map((w) => w.details?.reason)).toEqual([`${scripted.url(path)}: no usable signing key`])

        scripted.script(path, { json: issuer.publicJwks() })
        clock.advance(1)
        const cached = await tokenAt(issuer, clock)
        expectAccepted(await fx.call(app, { token: cached }), accepted)
        expectAccepted(await fx.call(app, { token: cached }), accepted) // in the verified-token cache from its second use

        scripted.script(path, unusable)
        clock.advance(61) // stale: the next request that needs a key refreshes in the background, and gets the unusable set
        expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
        await waitUntil(() => warnings().length === 2, 5000, 'the failed refresh to be logged')
        expect(scripted.requestCount(path)).toBe(3)
        expectAccepted(await fx.call(app, { token: cached }), accepted)
        expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock, { kid: issuer.currentKid }) }), accepted)
      },
    )
  })

  describe('metadata fine, jwks_uri down', () => {
    it('jwks_uri refuses connections: 503 with Retry-After, one logged warning naming it; the metadata is not fetched again', async () => {
      const clock = createClock()
      clock.freeze()
      const logger = capturingLogger()
      const deadJwks = `http://127.0.0.1:${await freePort()}/jwks.json`
      const issuer = await fx.startIssuer({ discovery: 'oauth', metadata: { jwks_uri: deadJwks } })
      const app = await start(issuerOption(issuer), { now: clock.now, logger, jwks: { failureBackoffSeconds: 1 } })
      const token = await tokenAt(issuer, clock)
      const answers = await Promise.all(Array.from({ length: 10 }, () => fx.call(app, { token })))
      for (const res of answers) expectRefusal(res, unavailable)
      const warnings = warningsAbout(logger, issuer.issuer)
      expect(warnings).toHaveLength(1)
      expect(String(warnings[0]!.details?.reason)).toContain(deadJwks)
      clock.advance(1)
      expectRefusal(await fx.call(app, { token }), unavailable)
      expect(warningsAbout(logger, issuer.issuer)).toHaveLength(2)
      expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(1) // the discovered jwks_uri is kept
    })

    it('jwks_uri answers 503, then comes back: 503 meanwhile, accepted after the backoff, without asking the metadata again', async () => {
      const clock = createClock()
      clock.freeze()
      const logger = capturingLogger()
      const path = `/jwks-down-${randomUUID()}.json`
      scripted.script(path, { json: { error: 'temporarily_unavailable' }, status: 503 })
      const issuer = await fx.startIssuer({ discovery: 'oauth', metadata: { jwks_uri: scripted.url(path) } })
      const app = await start(issuerOption(issuer), { now: clock.now, logger, jwks: { failureBackoffSeconds: 1 } })
      const token = await tokenAt(issuer, clock)
      expectRefusal(await fx.call(app, { token }), unavailable)
      expect(String(warningsAbout(logger, issuer.issuer)[0]?.details?.reason)).toContain('HTTP 503')
      scripted.script(path, { json: issuer.publicJwks() })
      expectRefusal(await fx.call(app, { token }), unavailable) // within the backoff
      expect(scripted.requestCount(path)).toBe(1)
      clock.advance(1)
      expectAccepted(await fx.call(app, { token }), accepted)
      expect(scripted.requestCount(path)).toBe(2)
      expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(1)
      expect(issuer.requestCount('/jwks.json')).toBe(0) // only the jwks_uri the metadata named is used
    })
  })

  const UNTRUSTED_METADATA: Array<{ title: string; options: TestIssuerOptions; reason: RegExp }> = [
    { title: 'issuer mismatch (another issuer)', options: { metadataIssuer: 'https://evil.example.com' }, reason: /does not equal the configured issuer/ },
    {
      title: 'jwks_uri over plain http to a non-loopback host',
      options: { metadata: { jwks_uri: 'http://keys.example.com/jwks.json' } },
      reason: /must use https/,
    },
    { title: 'no jwks_uri at all', options: { metadata: { jwks_uri: undefined } }, reason: /jwks_uri/ },
  ]

  describe('metadata that must not be trusted', () => {
    it.each(UNTRUSTED_METADATA)(
      '$title: 503 for 10 concurrent requests, ONE logged warning, the JWKS never fetched, nothing more during the backoff',
      async ({ options, reason }) => {
        const logger = capturingLogger()
        const issuer = await fx.startIssuer({ discovery: 'oauth', ...options })
        const app = await start(issuerOption(issuer), { logger, jwks: { failureBackoffSeconds: 60 } })
        const token = await sign(issuer, service)
        const answers = await Promise.all(Array.from({ length: 10 }, () => fx.call(app, { token })))
        for (const res of answers) expectRefusal(res, unavailable)
        for (let i = 0; i < 5; i++) expectRefusal(await fx.call(app, { token }), unavailable)
        const warnings = warningsAbout(logger, issuer.issuer)
        expect(warnings).toHaveLength(1)
        expect(String(warnings[0]!.details?.reason)).toMatch(reason)
        expect(JSON.stringify(logger.warnings)).not.toContain(token) // nothing of the request is logged
        expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(1)
        expect(issuer.requestCount('/jwks.json')).toBe(0)
      },
    )
  })
})

/** The `kid` of a compact JWS. */
function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid
}

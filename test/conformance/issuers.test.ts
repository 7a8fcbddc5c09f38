/**
 * Issuers and keys: metadata discovery (RFC 8414, OpenID with a path issuer), metadata issuer
 * mismatch, several issuers in one guard, key rotation, unknown-kid floods, outages, request
 * coalescing, no I/O at creation, prefetch. Every test gets its own issuer (own key, own request
 * log) and its own app, so request counts are exact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuthError, type CallsignOptions, type IssuerOptions } from '@callsign/core'
import type { OutageMode, TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { AUDIENCE, createFixture, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

const service = (id = 'svc-a'): Record<string, unknown> => ({ sub: id, client_id: id })
const accepted = (id = 'svc-a') => ({ caller: { id, source: 'token' as const } })

describe.each(adapters)('$name: issuers and keys', (adapter) => {
  /** A fresh app for `issuers`, silent logger, options merged over. */
  const start = (issuers: IssuerOptions | IssuerOptions[], extra: Partial<CallsignOptions> = {}): Promise<RunningApp> =>
    fx.start(adapter, { issuers, logger: quiet, ...extra })
  const call = async (app: RunningApp, issuer: TestIssuer, claims = service(), options: Parameters<typeof sign>[2] = {}) =>
    fx.call(app, { token: await sign(issuer, claims, options) })

  describe('metadata discovery', () => {
    it('finds the JWKS through RFC 8414 metadata', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const app = await start(issuerOption(issuer))
      expectAccepted(await call(app, issuer), { ...accepted(), issuer: issuer.issuer })
      expect(issuer.requests.map((r) => r.path)).toEqual(['/.well-known/oauth-authorization-server', '/jwks.json'])
    })

    it('finds the JWKS through OpenID metadata of an issuer with a path', async () => {
      const issuer = await fx.startIssuer({ discovery: 'openid', path: '/tenant-a' })
      expect(issuer.issuer).toMatch(/\/tenant-a$/)
      const app = await start(issuerOption(issuer))
      expectAccepted(await call(app, issuer), { ...accepted(), issuer: issuer.issuer })
      const paths = issuer.requests.map((r) => r.path)
      expect(paths).toContain('/tenant-a/.well-known/openid-configuration')
      expect(paths.at(-1)).toBe('/tenant-a/jwks.json')
      expect(issuer.requestCount('/jwks.json')).toBe(1)
    })

    it.each([
      {
        title: 'another issuer',
        setup: async () => {
          const issuer = await fx.startIssuer({ metadataIssuer: 'https://evil.example.com' })
          return { issuer, configured: issuer.issuer }
        },
      },
      {
        title: 'a look-alike (configured issuer has a trailing slash, metadata has none)',
        setup: async () => {
          const issuer = await fx.startIssuer({ path: '/t' })
          return { issuer, configured: `${issuer.issuer}/` }
        },
      },
    ])('metadata naming $title: 503 keys_unavailable with Retry-After, the JWKS is never fetched', async ({ setup }) => {
      const { issuer, configured } = await setup()
      const app = await start({ issuer: configured, audience: AUDIENCE })
      expectRefusal(await call(app, issuer, service(), { issuer: configured }), { status: 503, code: 'keys_unavailable' })
      expect(issuer.requests.some((r) => r.path.startsWith('/.well-known/oauth-authorization-server'))).toBe(true)
      expect(issuer.requestCount('/jwks.json')).toBe(0)
    })
  })

  describe('several issuers in one guard', () => {
    let a: TestIssuer
    let b: TestIssuer
    let app: RunningApp
    beforeAll(async () => {
      a = await fx.startIssuer({ discovery: 'oauth' })
      b = await fx.startIssuer({ discovery: 'none' })
      app = await start([issuerOption(a), issuerOption(b, { explicitJwks: true })])
    })

    it('accepts tokens of each issuer and reports which one issued them', async () => {
      expectAccepted(await call(app, a, service('from-a')), { ...accepted('from-a'), issuer: a.issuer })
      expectAccepted(await call(app, b, service('from-b')), { ...accepted('from-b'), issuer: b.issuer })
    })

    it('B\'s key never verifies a token claiming iss A (B\'s kid)', async () => {
      expectRefusal(await call(app, b, service(), { issuer: a.issuer }), { status: 401, code: 'invalid_token' })
    })

    it('B\'s key never verifies a token claiming iss A (no kid)', async () => {
      expectRefusal(await call(app, b, service(), { issuer: a.issuer, header: { kid: undefined } }), { status: 401, code: 'invalid_token' })
    })

    it('A\'s key never verifies a token claiming iss B', async () => {
      expectRefusal(await call(app, a, service(), { issuer: b.issuer }), { status: 401, code: 'invalid_token' })
    })
  })

  describe('key rotation and unknown kids', () => {
    it('accepts a rotated key after exactly one refetch (cooldownSeconds: 0), and drops removed keys', async () => {
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { jwks: { cooldownSeconds: 0 } })
      const first = issuer.currentKid
      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(1)

      const second = await issuer.rotateKeys()
      expect(second).not.toBe(first)
      expectAccepted(await call(app, issuer, service(), { kid: second }), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(2)
      expectAccepted(await call(app, issuer, service(), { kid: first }), accepted()) // still published, still cached
      expect(issuer.requestCount('/jwks.json')).toBe(2)

      const stale = await sign(issuer, service(), { kid: first }) // signed before its key leaves the JWKS
      const third = await issuer.rotateKeys({ keepPrevious: false })
      expectAccepted(await call(app, issuer, service(), { kid: third }), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(3)
      expectRefusal(await fx.call(app, { token: stale }), { status: 401, code: 'invalid_token' })
    })

    it('a flood of unknown kids causes at most one refetch per cooldown', async () => {
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }))
      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(1)

      for (let i = 0; i < 5; i++) {
        expectRefusal(await call(app, issuer, service(), { header: { kid: `rogue-${i}` } }), { status: 401, code: 'invalid_token' })
      }
      const burst = await Promise.all(
        Array.from({ length: 10 }, (_, i) => call(app, issuer, service(), { header: { kid: `rogue-burst-${i}` } })),
      )
      for (const res of burst) expectRefusal(res, { status: 401, code: 'invalid_token' })
      expect(issuer.requestCount('/jwks.json')).toBeLessThanOrEqual(2)
      expectAccepted(await call(app, issuer), accepted())
    })
  })

  describe('outages', () => {
    it('issuer down at the first request: 503 keys_unavailable with Retry-After, no retry during the backoff', async () => {
      const issuer = await fx.startIssuer({ discovery: 'none' })
      issuer.setOutage('down')
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { jwks: { failureBackoffSeconds: 60 } })
      const res = await call(app, issuer)
      expectRefusal(res, { status: 503, code: 'keys_unavailable' })
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      const fetches = issuer.requestCount()
      issuer.setOutage('none')
      expectRefusal(await call(app, issuer), { status: 503, code: 'keys_unavailable' })
      expect(issuer.requestCount()).toBe(fetches)
    })

    it('recovers once the issuer is back (failureBackoffSeconds: 0)', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      issuer.setOutage('down')
      const app = await start(issuerOption(issuer), { jwks: { failureBackoffSeconds: 0 } })
      expectRefusal(await call(app, issuer), { status: 503, code: 'keys_unavailable' })
      issuer.setOutage('none')
      expectAccepted(await call(app, issuer), accepted())
    })

    it.each<OutageMode>(['reset', 'garbage', 'huge'])('an issuer answering with "%s" is unavailable: 503', async (mode) => {
      const issuer = await fx.startIssuer({ discovery: 'none', hugeBodyBytes: 300 * 1024 })
      issuer.setOutage(mode)
      const app = await start(issuerOption(issuer, { explicitJwks: true }))
      expectRefusal(await call(app, issuer), { status: 503, code: 'keys_unavailable' })
    })

    it('keeps serving cached keys when the issuer goes down, also past cacheMaxAgeSeconds, until maxStaleSeconds', async () => {
      let clock = Date.now()
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), {
        now: () => clock,
        jwks: { cacheMaxAgeSeconds: 600, maxStaleSeconds: 3600, failureBackoffSeconds: 0 },
      })
      const at = (): { issuedAt: number } => ({ issuedAt: Math.floor(clock / 1000) })
      expectAccepted(await call(app, issuer, service(), at()), accepted())

      issuer.setOutage('down')
      expectAccepted(await call(app, issuer, service(), at()), accepted())
      clock += 700_000 // past cacheMaxAgeSeconds: a background refresh fails, cached keys still serve
      expectAccepted(await call(app, issuer, service(), at()), accepted())
      expectAccepted(await call(app, issuer, service(), at()), accepted())
      clock += 3_600_000 // past cacheMaxAgeSeconds + maxStaleSeconds: nothing usable left
      expectRefusal(await call(app, issuer, service(), at()), { status: 503, code: 'keys_unavailable' })
    })
  })

  describe('fetching discipline', () => {
    it('20 concurrent first requests share one metadata and one JWKS fetch', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      issuer.setLatency(100)
      const app = await start(issuerOption(issuer))
      const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => sign(issuer, service(`svc-${i}`))))
      const results = await Promise.all(tokens.map((token) => fx.call(app, { token })))
      results.forEach((res, i) => expectAccepted(res, accepted(`svc-${i}`)))
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(1)
    })

    it('does no network I/O when the middleware is created, only at the first request', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const app = await start(issuerOption(issuer))
      await new Promise((resolve) => setImmediate(resolve))
      expect(issuer.requestCount()).toBe(0)
      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount()).toBeGreaterThan(0)
    })

    it('prefetch: true fetches at creation and guard.ready() resolves; requests then need no fetch', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const app = await start(issuerOption(issuer), { prefetch: true })
      await expect(app.guard.ready()).resolves.toBeUndefined()
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(1)
    })

    it('prefetch against an issuer that is down: guard.ready() rejects with keys_unavailable', async () => {
      const issuer = await fx.startIssuer({ discovery: 'none' })
      issuer.setOutage('down')
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { prefetch: true, jwks: { failureBackoffSeconds: 60 } })
      const error: unknown = await app.guard.ready().then(
        () => undefined,
        (reason: unknown) => reason,
      )
      expect(error).toBeInstanceOf(AuthError)
      expect((error as AuthError).code).toBe('keys_unavailable')
    })
  })
})

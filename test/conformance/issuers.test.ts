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

    const MISMATCHES = [
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
    ]
    for (const { title, setup } of MISMATCHES)
      it(`metadata naming ${title}: 503 keys_unavailable with Retry-After, the JWKS is never fetched`, async () => {
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

    it("B's key never verifies a token claiming iss A (B's kid)", async () => {
      expectRefusal(await call(app, b, service(), { issuer: a.issuer }), { status: 401, code: 'invalid_token' })
    })

    it("B's key never verifies a token claiming iss A (no kid)", async () => {
      expectRefusal(await call(app, b, service(), { issuer: a.issuer, header: { kid: undefined } }), { status: 401, code: 'invalid_token' })
    })

    it("A's key never verifies a token claiming iss B", async () => {
      expectRefusal(await call(app, a, service(), { issuer: b.issuer }), { status: 401, code: 'invalid_token' })
    })

    it('an outage of one issuer does not affect the other', async () => {
      const down = await fx.startIssuer({ discovery: 'none' })
      const up = await fx.startIssuer({ discovery: 'oauth' })
      down.setOutage('down')
      const both = await start([issuerOption(down, { explicitJwks: true }), issuerOption(up)])
      expectRefusal(await call(both, down), { status: 503, code: 'keys_unavailable' })
      expectAccepted(await call(both, up), { ...accepted(), issuer: up.issuer })
    })
  })

  describe('token headers never steer a fetch', () => {
    it('jku, x5u and an embedded jwk pointing at an attacker are ignored: 401, the attacker sees no request', async () => {
      const attacker = await fx.startIssuer({ discovery: 'oauth' })
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }))
      const jwk = attacker.publicJwks().keys[0]
      const header = { jku: attacker.jwksUri, x5u: `${attacker.origin}/cert.pem`, jwk }
      expectRefusal(await call(app, attacker, service(), { issuer: issuer.issuer, header }), { status: 401, code: 'invalid_token' })
      expectRefusal(await call(app, attacker, service(), { issuer: issuer.issuer, header: { ...header, kid: undefined } }), {
        status: 401,
        code: 'invalid_token',
      })
      expect(attacker.requestCount()).toBe(0)
    })

    it('a token of an unconfigured issuer causes no fetch at all', async () => {
      const stranger = await fx.startIssuer({ discovery: 'oauth' })
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const app = await start(issuerOption(issuer))
      expectRefusal(await call(app, stranger), { status: 401, code: 'invalid_token' })
      expect(stranger.requestCount() + issuer.requestCount()).toBe(0)
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

    it('a flood of unknown kids causes at most one refetch per cooldown (30 s by default)', async () => {
      let clock = Date.now() // frozen unless advanced: the cooldown is measured on this clock
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: () => clock })
      const flood = async (label: string): Promise<void> => {
        for (let i = 0; i < 3; i++) {
          expectRefusal(await call(app, issuer, service(), { header: { kid: `${label}-${i}` } }), { status: 401, code: 'invalid_token' })
        }
        const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => call(app, issuer, service(), { header: { kid: `${label}-burst-${i}` } })))
        for (const res of burst) expectRefusal(res, { status: 401, code: 'invalid_token' })
      }
      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(1)

      await flood('rogue')
      expect(issuer.requestCount('/jwks.json')).toBe(1) // within the cooldown of the first fetch

      clock += 30_000
      await flood('later')
      expect(issuer.requestCount('/jwks.json')).toBe(2) // one refetch for the whole flood

      expectAccepted(await call(app, issuer), accepted())
      expect(issuer.requestCount('/jwks.json')).toBe(2)
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

    it.each<OutageMode>(['reset', 'hang', 'garbage', 'huge'])('an issuer in outage mode "%s" is unavailable: 503', async (mode) => {
      const issuer = await fx.startIssuer({ discovery: 'none', hugeBodyBytes: 300 * 1024 })
      issuer.setOutage(mode)
      // A short fetch timeout so a hanging issuer is given up on quickly (the outcome, not the time, is asserted).
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { jwks: { timeoutSeconds: 0.5 } })
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

    /** A `fetch` that counts calls as they are made (synchronously), then forwards them. */
    const countingFetch = (): { fetch: typeof globalThis.fetch; calls: () => number } => {
      let calls = 0
      return {
        fetch: (input, init) => {
          calls++
          return globalThis.fetch(input, init)
        },
        calls: () => calls,
      }
    }

    it('does no network I/O when the middleware is created, only at the first request', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const counter = countingFetch()
      const app = await start(issuerOption(issuer), { fetch: counter.fetch })
      await new Promise((resolve) => setImmediate(resolve))
      expect(counter.calls()).toBe(0)
      expect(issuer.requestCount()).toBe(0)
      expectAccepted(await call(app, issuer), accepted())
      expect(counter.calls()).toBe(2) // metadata, then JWKS
      expect(issuer.requestCount()).toBe(2)
    })

    it('prefetch: true fetches at creation and guard.ready() resolves; requests then need no fetch', async () => {
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      const counter = countingFetch()
      const app = await start(issuerOption(issuer), { prefetch: true, fetch: counter.fetch })
      expect(counter.calls()).toBeGreaterThan(0) // started at creation, before anyone asked
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

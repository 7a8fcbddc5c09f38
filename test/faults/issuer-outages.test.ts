/**
 * Fault injection against the identity provider, through each adapter over real HTTPS:
 * down at start (and recovery by itself), down after keys are cached (stale serving up to
 * maxStaleSeconds, also for tokens in the verified-token cache), a slow issuer (bounded answers,
 * one fetch for a crowd), malformed and oversized documents (503 when nothing is cached, keep
 * serving when something is), resets and hangs before and in the middle of a body.
 *
 * Extends test/conformance/issuers.test.ts (which covers the basic outage modes) rather than
 * repeating it: here the issuer is brought back, clocks cross the cache boundaries exactly,
 * fetch counts are exact and answer times are bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportJWK } from 'jose'
import { AuthError, createCallsign, type Callsign, type CallsignOptions, type IssuerOptions } from '@callsign/core'
import type { TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { createClock, type TestClock } from '../support/dpop.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import {
  bareRequest,
  capturingLogger,
  collectGarbageAfter,
  floodClient,
  warmUp,
  startScriptedServer,
  timed,
  waitUntil,
  type CapturingLogger,
  type ScriptedResponse,
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
/** Generous bound on any answer that may wait for one fetch: timeoutSeconds + 2 s. */
const within = (timeoutSeconds: number): number => (timeoutSeconds + 2) * 1000

let paths = 0
/** A fresh JWKS path on the scripted server (so request counts are per test). */
const freshPath = (): string => `/t${++paths}/jwks.json`

/** A private JWK of the issuer's current key, under its `kid` (what a misconfigured IdP might publish). */
async function privateJwkOf(issuer: TestIssuer): Promise<Record<string, unknown>> {
  return { ...(await exportJWK(issuer.privateKey())), kid: issuer.currentKid, alg: 'ES256', use: 'sig' }
}

/** JWKS documents an issuer must never be trusted with. `maxBytes` is 16 KiB and `maxKeys` 5 in these tests. */
const BAD_DOCUMENTS: Array<{ title: string; overHttp?: boolean; document: (issuer: TestIssuer) => Promise<ScriptedResponse> }> = [
  { overHttp: true, title: 'garbage (HTML, not JSON)', document: async () => ({ body: '<html><body>502 Bad Gateway {"keys": [</body></html>' }) },
  {
    title: 'huge: larger than maxBytes, with content-length',
    document: async (issuer) => ({ json: { ...issuer.publicJwks(), padding: 'x'.repeat(32 * 1024) } }),
  },
  { overHttp: true, title: 'huge: larger than maxBytes, chunked without content-length', document: async () => ({ chunkedBytes: 256 * 1024 }) },
  { overHttp: true, title: 'a JSON array of the keys', document: async (issuer) => ({ json: issuer.publicJwks().keys }) },
  { overHttp: true, title: '{"keys": "x"}', document: async () => ({ json: { keys: 'x' } }) },
  { title: 'JSON null', document: async () => ({ json: null }) },
  { title: '{"keys": []}', document: async () => ({ json: { keys: [] } }) },
  {
    title: 'only a symmetric key (kty oct) under the issuer kid',
    document: async (issuer) => ({ json: { keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ', kid: issuer.currentKid, alg: 'HS256' }] } }),
  },
  { title: 'only the private key (with "d") under the issuer kid', document: async (issuer) => ({ json: { keys: [await privateJwkOf(issuer)] } }) },
  {
    overHttp: true,
    title: 'only symmetric and private keys',
    document: async (issuer) => ({ json: { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }, await privateJwkOf(issuer)] } }),
  },
  { title: 'only encryption keys (use: enc)', document: async (issuer) => ({ json: { keys: issuer.publicJwks().keys.map((k) => ({ ...k, use: 'enc' })) } }) },
  { title: 'more than maxKeys keys', document: async (issuer) => ({ json: { keys: Array.from({ length: 6 }, () => issuer.publicJwks().keys[0]) } }) },
  { title: 'HTTP 500 with a valid JWKS body', document: async (issuer) => ({ json: issuer.publicJwks(), status: 500 }) },
  { title: 'HTTP 404', document: async () => ({ json: { error: 'not_found' }, status: 404 }) },
  { title: 'a redirect to the real JWKS (redirects are refused)', document: async () => ({ body: '', status: 302, headers: { location: '/elsewhere' } }) },
]

describe.each(adapters)('$name: identity provider faults', (adapter) => {
  const start = (issuers: IssuerOptions | IssuerOptions[], extra: Partial<CallsignOptions> = {}): Promise<RunningApp> =>
    fx.start(adapter, { issuers, logger: quiet, ...extra })
  /** A token of `issuer` issued at the guard clock's current second. */
  const tokenAt = (issuer: TestIssuer, clock: TestClock, extra: Parameters<typeof sign>[2] = {}): Promise<string> =>
    sign(issuer, service, { issuedAt: Math.floor(clock.now() / 1000), ...extra })
  const warningsAbout = (logger: CapturingLogger, issuer: string) =>
    logger.warnings.filter((w) => w.message === 'callsign: could not fetch issuer keys' && w.details?.issuer === issuer)

  describe('issuer down at start', () => {
    it('503 keys_unavailable with Retry-After <= failureBackoffSeconds, no fetch during the backoff, recovers by itself after it', async () => {
      const clock = createClock()
      clock.freeze()
      const logger = capturingLogger()
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      issuer.setOutage('down')
      const app = await start(issuerOption(issuer), { now: clock.now, logger, jwks: { failureBackoffSeconds: 1 } })
      const token = await tokenAt(issuer, clock)

      const down = await fx.call(app, { token })
      expectRefusal(down, unavailable)
      expect(down.headers['retry-after']).toBe('1')
      expect(issuer.requestCount()).toBe(1) // the metadata request got 503: nothing else tried
      expect(warningsAbout(logger, issuer.issuer)).toHaveLength(1)

      issuer.setOutage('none')
      clock.advance(0.5) // still within the backoff: no attempt, even though the issuer is back
      const waiting = await fx.call(app, { token })
      expectRefusal(waiting, unavailable)
      expect(waiting.headers['retry-after']).toBe('1')
      expect(issuer.requestCount()).toBe(1)

      clock.advance(0.5) // the backoff is over: the next request fetches, without any restart
      expectAccepted(await fx.call(app, { token }), accepted)
      expect(issuer.requestCount('/.well-known/oauth-authorization-server')).toBe(2)
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      expect(warningsAbout(logger, issuer.issuer)).toHaveLength(1) // requests in the backoff do not log
    })

    it('real clock, failureBackoffSeconds 0.3: readiness fails while down, then requests and ready() recover after a short real wait', async () => {
      const issuer = await fx.startIssuer({ discovery: 'none' })
      issuer.setOutage('down')
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { prefetch: true, jwks: { failureBackoffSeconds: 0.3 } })
      await expect(app.guard.ready()).rejects.toMatchObject({ code: 'keys_unavailable' })
      const token = await sign(issuer, service)
      const down = await fx.call(app, { token })
      expectRefusal(down, unavailable)
      expect(down.headers['retry-after']).toBe('1') // whole seconds, at least 1
      issuer.setOutage('none')
      const before = issuer.requestCount()
      await new Promise((resolve) => setTimeout(resolve, 350)) // > failureBackoffSeconds since the last failure
      expectAccepted(await fx.call(app, { token }), accepted)
      await expect(app.guard.ready()).resolves.toBeUndefined()
      expect(issuer.requestCount() - before).toBe(1) // one fetch after the outage, by the first request that needed keys
    })
  })

  describe('issuer down after keys are cached', () => {
    const JWKS = { cacheMaxAgeSeconds: 60, maxStaleSeconds: 120, failureBackoffSeconds: 5 }

    it('keeps serving past cacheMaxAgeSeconds while background refreshes fail, until exactly cacheMaxAge + maxStale, then 503; recovers when back', async () => {
      const clock = createClock()
      const t0 = clock.freeze()
      const logger = capturingLogger()
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: clock.now, logger, jwks: JWKS })
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      expect(issuer.requestCount()).toBe(1)

      issuer.setOutage('down')
      clock.advance(30) // fresh: no fetch at all
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      expect(issuer.requestCount()).toBe(1)

      clock.advance(31) // past cacheMaxAgeSeconds: served stale, a background refresh runs and fails
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      await waitUntil(() => warningsAbout(logger, issuer.issuer).length === 1, 5000, 'the failed background refresh to be logged')
      expect(issuer.requestCount()).toBe(2)
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      expect(issuer.requestCount()).toBe(2) // within failureBackoffSeconds: no new attempt

      clock.advance(10) // past the backoff: another background attempt, still failing, still serving
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      await waitUntil(() => warningsAbout(logger, issuer.issuer).length === 2, 5000, 'the second failed refresh')
      expect(issuer.requestCount()).toBe(3)

      clock.freeze((t0 + JWKS.cacheMaxAgeSeconds + JWKS.maxStaleSeconds) * 1000) // the last instant keys may serve
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      clock.advance(0.001) // one millisecond later: nothing usable is cached
      const expired = await fx.call(app, { token: await tokenAt(issuer, clock) })
      expectRefusal(expired, unavailable)

      issuer.setOutage('none')
      clock.advance(JWKS.failureBackoffSeconds)
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      await expect(app.guard.ready()).resolves.toBeUndefined()
    })

    it('a token accepted before (in the verified-token cache) is also refused once the keys are older than cacheMaxAge + maxStale', async () => {
      const clock = createClock()
      const t0 = clock.freeze()
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: clock.now, jwks: JWKS })
      // One token reused for its whole life (600 s > cacheMaxAge + maxStale = 180 s), as a client would.
      const token = await sign(issuer, service, { issuedAt: t0, expiresInSeconds: 600 })
      expectAccepted(await fx.call(app, { token }), accepted)
      issuer.setOutage('down')
      clock.advance(JWKS.cacheMaxAgeSeconds + 1)
      expectAccepted(await fx.call(app, { token }), accepted) // stale but within maxStale
      clock.freeze((t0 + JWKS.cacheMaxAgeSeconds + JWKS.maxStaleSeconds) * 1000)
      expectAccepted(await fx.call(app, { token }), accepted)
      clock.advance(1)
      // The README: "Keys serve at most cacheMaxAgeSeconds + maxStaleSeconds after their last
      // successful fetch. After that, requests get 503" — a cached verification must not outlive its key set.
      expectRefusal(await fx.call(app, { token }), unavailable)
    })

    it.each(['reset', 'hang'] as const)(
      'issuer in outage mode "%s" after caching: requests keep being served, a hanging refresh does not hold them',
      async (mode) => {
        const clock = createClock()
        clock.freeze()
        const logger = capturingLogger()
        const issuer = await fx.startIssuer({ discovery: 'none', hugeBodyBytes: 64 * 1024 })
        const app = await start(issuerOption(issuer, { explicitJwks: true }), {
          now: clock.now,
          logger,
          jwks: { ...JWKS, maxBytes: 16 * 1024, timeoutSeconds: 10 },
        })
        expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
        issuer.setOutage(mode)
        clock.advance(JWKS.cacheMaxAgeSeconds + 1)
        const { value: stale, ms } = await timed(async () => fx.call(app, { token: await tokenAt(issuer, clock) }))
        expectAccepted(stale, accepted)
        // Stale-while-revalidate: the answer never waits for the refresh (which may hang for timeoutSeconds = 10).
        expect(ms).toBeLessThan(5000)
        await waitUntil(() => issuer.requestCount() === 2, 5000, 'the background refresh to reach the issuer')
        for (let i = 0; i < 3; i++) expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
        expect(issuer.requestCount()).toBe(2) // one refresh in flight (or failed and backing off), never one per request
        if (mode !== 'hang') await waitUntil(() => warningsAbout(logger, issuer.issuer).length === 1, 5000, 'the failed refresh to be logged')
      },
    )
  })

  describe.concurrent('malformed, oversized and unusable key sets (the kinds named in the brief; every kind runs in process below)', () => {
    it.each(BAD_DOCUMENTS.filter((d) => d.overHttp))(
      '$title: 503 while nothing is cached; once keys are cached, a refresh returning it changes nothing',
      ({ document }) =>
        badKeySetScenario(document, {
          async start(issuers, extra) {
            const app = await start(issuers, extra)
            return {
              ok: async (token) => expectAccepted(await fx.call(app, { token }), accepted),
              unavailable: async (token) => expectRefusal(await fx.call(app, { token }), unavailable),
            }
          },
        }),
    )
  })
})

/** Reasons of the failed key fetches of `issuer` logged so far. */
const waitedFor = (logger: CapturingLogger, issuer: string): unknown[] =>
  logger.warnings.filter((w) => w.message === 'callsign: could not fetch issuer keys' && w.details?.issuer === issuer).map((w) => w.details?.reason)

// Waiting on real timeouts (1 s each): one adapter at a time, its cases side by side.
describe.each(adapters)('$name: identity provider faults with bounded waits', (adapter) => {
  describe.concurrent('run side by side', () => {
    const start = (issuers: IssuerOptions | IssuerOptions[], extra: Partial<CallsignOptions> = {}): Promise<RunningApp> =>
      fx.start(adapter, { issuers, logger: quiet, ...extra })
    const tokenAt = (issuer: TestIssuer, clock: TestClock): Promise<string> => sign(issuer, service, { issuedAt: Math.floor(clock.now() / 1000) })

    it('slow issuer, latency 3 s > timeoutSeconds 1: the first request and 50 concurrent ones get 503 within timeoutSeconds + 2 s, from ONE fetch; then recovers', async () => {
      const clock = createClock()
      const issuer = await fx.startIssuer({ discovery: 'oauth' })
      issuer.setLatency(3000)
      // Plain HTTP (as behind a sidecar) and connections opened beforehand: the burst reaches the guard at once.
      const app = await fx.start(
        adapter,
        { issuers: issuerOption(issuer), logger: quiet, now: clock.now, jwks: { timeoutSeconds: 1, failureBackoffSeconds: 1 } },
        { protocol: 'http' },
      )
      const token = await sign(issuer, service)
      const client = floodClient(fx.ca.certPem, 51)
      await warmUp(client, `${app.url}/whoami`, 51)
      expect(issuer.requestCount()).toBe(0)

      const first = timed(() => client.get(`${app.url}/whoami`, `Bearer ${token}`))
      await waitUntil(() => issuer.requestCount() === 1, 5000, 'the slow metadata fetch to start')
      clock.freeze() // the backoff after the timeout lasts until the clock is advanced
      const crowd = Promise.all(Array.from({ length: 50 }, () => timed(() => client.get(`${app.url}/whoami`, `Bearer ${token}`))))
      const answers = [await first, ...(await crowd)]
      expect(answers).toHaveLength(51) // every request answered
      for (const { value, ms } of answers) {
        expectRefusal(value, unavailable)
        expect(ms).toBeLessThan(within(1))
      }
      expect(issuer.requestCount()).toBe(1) // no pile-up: the crowd joined the one fetch (or met the backoff)

      issuer.setLatency(0)
      clock.advance(1)
      expectAccepted(await client.get(`${app.url}/whoami`, `Bearer ${token}`), accepted)
      expect(issuer.requestCount('/jwks.json')).toBe(1)
      client.close()
    })

    it.each([
      ['before the response headers', (): ScriptedResponse => ({ hang: true })],
      ['in the middle of the body (the timeout covers the body)', (jwks: unknown): ScriptedResponse => ({ hangMidBody: jwks })],
    ])(
      'issuer hangs %s, timeoutSeconds 1: 503 within timeoutSeconds + 2 s (also after a garbage collection), and the next request does not wait again',
      async (_title, fault) => {
        const issuer = await fx.startIssuer({ discovery: 'none' })
        const path = freshPath()
        scripted.script(path, fault(issuer.publicJwks()))
        const app = await start(
          { issuer: issuer.issuer, audience: AUDIENCE, jwksUri: scripted.url(path) },
          { jwks: { timeoutSeconds: 1, failureBackoffSeconds: 30 } },
        )
        const token = await sign(issuer, service)
        // A collection while the fetch waits: before the fix in internal/fetch-json.ts the abort signal
        // stopped reaching the body once undici's Request was collected, and a body hang never ended.
        const stopCollecting = collectGarbageAfter(300)
        const hung = await timed(() => fx.call(app, { token })).finally(stopCollecting)
        expectRefusal(hung.value, unavailable)
        expect(hung.ms).toBeLessThan(within(1))
        const next = await timed(() => fx.call(app, { token })) // within the backoff: answered without a fetch
        expectRefusal(next.value, unavailable)
        expect(next.ms).toBeLessThan(within(1))
        expect(scripted.requestCount(path)).toBe(1) // no second fetch, so no second wait
      },
    )

    it('rotation on a quiet service while the JWKS endpoint hangs, timeoutSeconds 1: the first token with the new kid waits for the refetch and gets 503 once it times out (not a hang); the cached kid is served meanwhile', async () => {
      const clock = createClock()
      clock.freeze()
      const logger = capturingLogger()
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const app = await start(issuerOption(issuer, { explicitJwks: true }), { now: clock.now, logger, jwks: { timeoutSeconds: 1, failureBackoffSeconds: 30 } })
      const k1 = issuer.currentKid
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      clock.advance(601) // idle past the default cacheMaxAgeSeconds
      const k2 = await issuer.rotateKeys()
      issuer.setOutage('hang')
      const waited = await fx.call(app, { token: await sign(issuer, service, { kid: k2, issuedAt: Math.floor(clock.now() / 1000) }) })
      expectRefusal(waited, unavailable)
      expect(waitedFor(logger, issuer.issuer)).toEqual([`${issuer.jwksUri}: timed out`]) // answered by the fetch timeout
      expectAccepted(await fx.call(app, { token: await sign(issuer, service, { kid: k1, issuedAt: Math.floor(clock.now() / 1000) }) }), accepted)
      expect(issuer.requestCount('/jwks.json')).toBe(2)
    })

    it('connection reset in the middle of the JWKS body: 503 at once; with keys cached, still served', async () => {
      const clock = createClock()
      clock.freeze()
      const issuer = await fx.startIssuer({ discovery: 'none' })
      const path = freshPath()
      scripted.script(path, { resetMidBody: issuer.publicJwks() })
      const app = await start(
        { issuer: issuer.issuer, audience: AUDIENCE, jwksUri: scripted.url(path) },
        {
          now: clock.now,
          jwks: { timeoutSeconds: 1, failureBackoffSeconds: 1, cacheMaxAgeSeconds: 60 },
        },
      )
      const { value, ms } = await timed(async () => fx.call(app, { token: await tokenAt(issuer, clock) }))
      expectRefusal(value, unavailable)
      expect(ms).toBeLessThan(within(1))

      scripted.script(path, { json: issuer.publicJwks() })
      clock.advance(1)
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      scripted.script(path, { resetMidBody: issuer.publicJwks() })
      clock.advance(61)
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
      await waitUntil(() => scripted.requestCount(path) === 3, 5000, 'the background refresh')
      expectAccepted(await fx.call(app, { token: await tokenAt(issuer, clock) }), accepted)
    })
  })
})

describe.concurrent('core, in process: every bad key set', () => {
  it.each(BAD_DOCUMENTS)('$title: keys_unavailable while nothing is cached; a cached set is never replaced by it', ({ document }) =>
    badKeySetScenario(document, {
      async start(issuers, extra) {
        const guard: Callsign = createCallsign({ issuers, logger: quiet, ...extra })
        return {
          ok: async (token) => expect((await guard.authenticate(bareRequest(`Bearer ${token}`)))?.caller.id).toBe('svc-a'),
          unavailable: async (token) => {
            const error: unknown = await guard.authenticate(bareRequest(`Bearer ${token}`)).then(
              () => undefined,
              (reason: unknown) => reason,
            )
            expect(error).toBeInstanceOf(AuthError)
            expect(error).toMatchObject({ code: 'keys_unavailable', status: 503, headers: { 'retry-after': expect.stringMatching(/^[1-9][0-9]*$/) } })
          },
        }
      },
    }),
  )
})

interface ScenarioTarget {
  start(issuers: IssuerOptions, extra: Partial<CallsignOptions>): Promise<{ ok(token: string): Promise<void>; unavailable(token: string): Promise<void> }>
}

/**
 * One bad key set, served by the scripted server as the issuer's JWKS: refused while nothing is
 * cached (503, logged); after good keys are cached, a background refresh and a rotation refetch
 * that get the bad document leave the cached set in place.
 */
async function badKeySetScenario(document: (issuer: TestIssuer) => Promise<ScriptedResponse>, target: ScenarioTarget): Promise<void> {
  const clock = createClock()
  clock.freeze()
  const logger = capturingLogger()
  const issuer = await fx.startIssuer({ discovery: 'none' })
  const path = freshPath()
  const token = (kid?: string): Promise<string> => sign(issuer, service, { issuedAt: Math.floor(clock.now() / 1000), ...(kid ? { kid } : {}) })
  const warnings = (): number => logger.warnings.filter((w) => w.details?.issuer === issuer.issuer).length
  scripted.script(path, await document(issuer))
  const guard = await target.start(
    { issuer: issuer.issuer, audience: AUDIENCE, jwksUri: scripted.url(path) },
    { now: clock.now, logger, jwks: { maxBytes: 16 * 1024, maxKeys: 5, cacheMaxAgeSeconds: 60, failureBackoffSeconds: 1, cooldownSeconds: 0 } },
  )

  // Nothing cached: the bad document is fetched, refused, logged: 503.
  await guard.unavailable(await token())
  expect(scripted.requestCount(path)).toBe(1)
  expect(warnings()).toBe(1)

  // The issuer publishes good keys again: after the backoff they are fetched and used.
  scripted.script(path, { json: issuer.publicJwks() })
  clock.advance(1)
  await guard.ok(await token())
  expect(scripted.requestCount(path)).toBe(2)

  // Keys cached; the issuer serves the bad document again.
  scripted.script(path, await document(issuer))
  clock.advance(61) // past cacheMaxAgeSeconds: the background refresh gets the bad document
  await guard.ok(await token())
  await waitUntil(() => warnings() === 2, 5000, 'the failed refresh to be logged')
  expect(scripted.requestCount(path)).toBe(3)
  // The cached set was not replaced by the bad one: the current kid still verifies ...
  await guard.ok(await token())
  // ... and a token with a new kid (cooldown 0, backoff over) refetches, gets the bad document: 503, not 401.
  clock.advance(1)
  const original = issuer.currentKid
  const rotated = await issuer.rotateKeys()
  await guard.unavailable(await token(rotated))
  expect(scripted.requestCount(path)).toBe(4)
  await guard.ok(await token(original))
}

// createCallsign's wiring: the parts the guard builds share its keys and its clock.
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  authorizeRequest,
  compileRule,
  createCallsign,
  MemoryReplayStore,
  revocationKey,
  type AuthRequest,
  type CallsignOptions,
  type DecisionEvent,
} from '../src/index.js'
import { refusalOf } from './refusal.js'

const AUD = 'https://orders.example'
const CALLER = 'spiffe://example.org/ns/web/sa/frontend'
const CLIENT_ID = 'orders-api'
const quiet = { warn() {} }
let issuer: TestIssuer
beforeAll(async () => {
  issuer = await startTestIssuer()
})
afterAll(async () => {
  await issuer?.close()
})

const issuerOptions = () => ({ issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri })
const request = (authorization?: string): AuthRequest => ({
  method: 'GET',
  url: '/orders',
  headers: authorization === undefined ? { host: 'api.example' } : { host: 'api.example', authorization },
  socket: {},
})

/**
 * A loopback RFC 7662 endpoint whose every answer is an RFC 9701 signed JWT, signed with the test
 * issuer's own key (so the issuer's JWKS verifies both its access tokens and these answers).
 */
async function startSignedIntrospection(): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const answer = {
        active: true,
        client_id: CALLER,
        sub: CALLER,
        scope: 'orders:read',
        aud: AUD,
        iss: issuer.issuer,
        exp: Math.floor(Date.now() / 1000) + 300,
      }
      void issuer.signAccessToken({ token_introspection: answer }, { typ: 'token-introspection+jwt', audience: CLIENT_ID }).then((jwt) => {
        res.writeHead(200, { 'content-type': 'application/token-introspection+jwt' }).end(jwt)
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { endpoint: `http://127.0.0.1:${port}/introspect`, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

describe('createCallsign: one set of issuer keys', () => {
  it('verifies signed introspection answers and JWTs of the same issuer with one key set: the JWKS is fetched once', async () => {
    const introspection = await startSignedIntrospection()
    try {
      const guard = createCallsign({
        logger: quiet,
        issuers: {
          ...issuerOptions(),
          introspection: { endpoint: introspection.endpoint, clientId: CLIENT_ID, clientSecret: 'introspection-secret', response: 'jwt' },
        },
      })
      const before = issuer.requestCount('/jwks.json')
      const opaque = await guard.authenticate(request(`Bearer ${randomBytes(32).toString('base64url')}`))
      expect(opaque).toMatchObject({ caller: { id: CALLER }, scopes: ['orders:read'] })
      const jwt = await issuer.signAccessToken({ sub: CALLER, client_id: CALLER, scope: 'orders:read' }, { audience: AUD })
      expect(await guard.authenticate(request(`Bearer ${jwt}`))).toMatchObject({ caller: { id: CALLER }, scopes: ['orders:read'] })
      expect(issuer.requestCount('/jwks.json') - before).toBe(1)
    } finally {
      await introspection.close()
    }
  })
})

describe('createCallsign: the injected clock (now)', () => {
  const T = Date.parse('2031-05-06T07:08:09.123Z')

  it('stamps decision events with it, at both stages', async () => {
    const events: DecisionEvent[] = []
    const guard = createCallsign({ logger: quiet, issuers: issuerOptions(), now: () => T, onDecision: (event) => events.push(event) })
    expect(refusalOf(() => guard.check(request())).code).toBe('credentials_missing')

    const optional = createCallsign({
      logger: quiet,
      issuers: issuerOptions(),
      now: () => T,
      credentials: 'optional',
      onDecision: (event) => events.push(event),
    })
    const anonymous = request()
    expect(optional.check(anonymous)).toBeUndefined()
    await Promise.resolve() // a plain object cannot signal its end: the authenticate event goes out now
    expect(refusalOf(() => authorizeRequest(anonymous, compileRule({ scopes: ['orders:read'] }))).code).toBe('credentials_missing')

    expect(events.map((event) => [event.stage, event.outcome, event.time])).toEqual([
      ['authenticate', 'refused', '2031-05-06T07:08:09.123Z'],
      ['authenticate', 'anonymous', '2031-05-06T07:08:09.123Z'],
      ['authorize', 'refused', '2031-05-06T07:08:09.123Z'],
    ])
  })

  it('runs the default replay store and revocation denylist on it: entries expire when it passes their ttl', async () => {
    let now = T
    const guard = createCallsign({ logger: quiet, issuers: issuerOptions(), now: () => now, revocation: {} })
    const replay = guard.config.dpop.replayStore
    expect(await replay.markUsed('proof-jti', 60)).toBe(true)
    now += 59_000
    expect(await replay.markUsed('proof-jti', 60)).toBe(false)

    const denylist = guard.config.revocation!.store
    const key = revocationKey(issuer.issuer, 'token-jti')
    await guard.revoke({ iss: issuer.issuer, jti: 'token-jti', exp: Math.floor(now / 1000) + 30 })
    expect(await denylist.isRevoked(key)).toBe(true)

    now += 120_000 // past the proof window and the token's exp plus the clock tolerance, on the guard's clock only
    expect(await replay.markUsed('proof-jti', 60)).toBe(true)
    expect(await denylist.isRevoked(key)).toBe(false)
  })

  it('leaves the stores the application passes as they are', () => {
    const replayStore = new MemoryReplayStore()
    const store = new MemoryReplayStore()
    const guard = createCallsign({ logger: quiet, issuers: issuerOptions(), now: () => T, dpop: { replayStore }, revocation: { store } })
    expect(guard.config.dpop.replayStore).toBe(replayStore)
    expect(guard.config.revocation?.store).toBe(store)
  })

  it.each<[string, Partial<CallsignOptions>, string]>([
    ['dpop that is not an object', { dpop: 'required' as never }, 'Callsign: "dpop" must be an object'],
    ['an unknown dpop option', { dpop: { nonces: true } as never }, 'Callsign: "dpop.nonces" is not a known option'],
    ['revocation that is not an object', { revocation: [] as never }, 'Callsign: "revocation" must be an object'],
  ])('refuses %s with the same message as without a clock', (_case, options, message) => {
    const create = (extra: Partial<CallsignOptions>) => () => createCallsign({ logger: quiet, issuers: issuerOptions(), ...options, ...extra })
    expect(create({})).toThrow(message)
    expect(create({ now: () => T })).toThrow(message)
  })
})

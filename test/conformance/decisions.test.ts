// Decision events (onDecision) and dry-run (enforce: false), the same in every framework.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { authorizeRequest, compileRule, type CallsignOptions, type DecisionEvent } from '@callsign/core'
import { adapters } from '../support/adapters.js'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

describe.each(adapters)('$name: decision events and dry run', (adapter) => {
  let fx: Fixture
  beforeAll(async () => {
    fx = await createFixture()
  })
  afterAll(async () => {
    await fx?.close()
  })

  const start = async (extra: Partial<CallsignOptions> = {}) => {
    const events: DecisionEvent[] = []
    const app = await fx.start(adapter, { issuers: issuerOption(fx.main), logger: quiet, onDecision: (e) => events.push(e), ...extra })
    // Events for requests without a rule are emitted when the request closes: wait for them.
    const settled = async (count: number) => {
      for (let i = 0; i < 50 && events.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 10))
      return events
    }
    return { app, events, settled }
  }

  it('reports one allowed event per request checked by a rule, with identities and no token', async () => {
    const { app, settled } = await start()
    const token = await sign(fx.main, { sub: 'alice', act: { sub: ID.frontend }, scope: 'orders:read' })
    const res = await fx.call(app, { path: '/orders?x=1', token, cert: fx.certs.frontend })
    expect(res.status).toBe(200)
    const events = await settled(1)
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(events).toHaveLength(1)
    const [event] = events as [DecisionEvent]
    expect(event).toMatchObject({
      outcome: 'allowed',
      stage: 'authorize',
      enforced: true,
      status: 200,
      method: 'GET',
      path: '/orders',
      scheme: 'bearer',
      caller: { id: ID.frontend, source: 'mtls' },
      user: 'alice',
      actors: [ID.frontend],
      issuer: fx.main.issuer,
      binding: 'bearer',
      peer: { spiffeId: ID.frontend, verification: 'tls' },
      // A day-long certificate with most of its life left: not flagged by the default (a tenth of the lifetime).
      peerExpiringSoon: false,
    })
    expect(event.peer?.daysLeft).toBe(0)
    expect(event.durationMs).toBeGreaterThanOrEqual(0)
    expect(JSON.stringify(event)).not.toContain(token.split('.')[2]!)
    expect(JSON.stringify(event)).not.toContain(token.split('.')[1]!)
  })

  it('reports a refusal by the guard with its code, and a refusal by a rule with its side', async () => {
    const { app, settled } = await start()
    expect((await fx.call(app, { path: '/orders', token: 'not-a-jwt' })).status).toBe(401)
    const service = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'nothing' })
    expect((await fx.call(app, { path: '/orders', token: service })).status).toBe(403)
    const events = await settled(2)
    expect(events.map((e) => [e.stage, e.outcome, e.status, e.code])).toEqual([
      ['authenticate', 'refused', 401, 'invalid_token'],
      ['authorize', 'refused', 403, 'insufficient_scope'],
    ])
    expect(events[1]!.caller).toEqual({ id: ID.worker, source: 'token' })
  })

  it('reports an authenticated request on a route without a rule once, when it ends', async () => {
    const { app, settled } = await start()
    const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker })
    expect((await fx.call(app, { path: '/public', token })).status).toBe(200)
    const events = await settled(1)
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ stage: 'authenticate', outcome: 'allowed', path: '/public' })
  })

  it('flags a peer certificate close to its end, with an explicit warning window', async () => {
    const { app, settled } = await start({ peerExpiryWarningDays: 2 })
    const token = await sign(fx.main, { sub: ID.frontend, client_id: ID.frontend, scope: 'orders:read' })
    expect((await fx.call(app, { path: '/orders', token, cert: fx.certs.frontend })).status).toBe(200)
    expect((await settled(1))[0]).toMatchObject({ peerExpiringSoon: true, peer: { daysLeft: 0 } })
  })

  it('keeps serving when the hook throws', async () => {
    const { app } = await start({
      onDecision: () => {
        throw new Error('audit sink down')
      },
    })
    const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' })
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
  })

  it('dry run (enforce: false): a refused request passes, and the event says it would have been refused', async () => {
    const { app, settled } = await start({ enforce: false })
    const bad = await fx.call(app, { path: '/orders', token: 'not-a-jwt' })
    // The route answers the (absent) auth context: 200 with no body, or Koa's 204.
    expect([200, 204]).toContain(bad.status)
    const service = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'nothing' })
    const forbidden = await fx.call(app, { path: '/orders', token: service })
    expect(forbidden.status).toBe(200)
    expect(forbidden.body.caller).toEqual({ id: ID.worker, source: 'token' })
    const events = await settled(2)
    expect(events.map((e) => [e.stage, e.outcome, e.enforced, e.code])).toEqual([
      ['authenticate', 'refused', false, 'invalid_token'],
      ['authorize', 'refused', false, 'insufficient_scope'],
    ])
    // Each dry-run refusal names the failing check and carries its explanation, as `callsign explain` words it.
    expect(events.map((e) => [e.check, e.explanation])).toEqual([
      ['header', [{ check: 'header', ok: false, detail: 'invalid_token: malformed token' }]],
      ['rule', [{ check: 'rule', ok: false, detail: 'insufficient_scope: the token lacks a required scope (caller side)' }]],
    ])
  })

  it('a rule can be a dry run on its own while the guard enforces', async () => {
    const { app, settled } = await start()
    const service = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'nothing' })
    const request = { method: 'GET', url: '/reports', headers: { authorization: `Bearer ${service}` } }
    const auth = await app.guard.authenticate(request)
    expect(authorizeRequest(request, compileRule({ scopes: ['reports:read'], enforce: false }))).toBe(auth)
    expect(() => authorizeRequest(request, compileRule({ scopes: ['reports:read'] }))).toThrow(/required scope/)
    // A plain object (not a Node request) cannot signal its end: authenticate and authorize report separately.
    const events = await settled(3)
    expect(events.map((e) => [e.stage, e.outcome, e.enforced, e.code])).toEqual([
      ['authenticate', 'allowed', true, undefined],
      ['authorize', 'refused', false, 'insufficient_scope'],
      ['authorize', 'refused', true, 'insufficient_scope'],
    ])
  })
})

describe('Fastify: decision events in the framework logger (pino)', () => {
  it('writes one structured line per request, refusals at warn, never the token', async () => {
    const { Writable } = await import('node:stream')
    const { fastify } = await import('fastify')
    const { default: callsign, requireAuth } = await import('@callsign/fastify')
    const fx = await createFixture()
    const lines: Array<Record<string, unknown>> = []
    const stream = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    const app = fastify({ logger: { level: 'info', stream } })
    try {
      await app.register(callsign, { issuers: issuerOption(fx.main), logger: quiet, logDecisions: 'info' })
      app.get('/orders', { preHandler: requireAuth({ scopes: ['orders:read'] }) }, async () => ({ ok: true }))
      await app.ready()
      const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' })
      expect((await app.inject({ url: '/orders', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200)
      expect((await app.inject({ url: '/orders', headers: { authorization: 'Bearer nope' } })).statusCode).toBe(401)
      const decisions = lines.filter((line) => line.msg === 'callsign decision')
      expect(decisions.map((line) => [line.level, (line.callsign as DecisionEvent).outcome])).toEqual([
        [30, 'allowed'],
        [40, 'refused'],
      ])
      expect(JSON.stringify(decisions)).not.toContain(token.split('.')[2]!)
    } finally {
      await app.close()
      await fx.close()
    }
  })

  it('refuses an unknown logDecisions level at registration', async () => {
    const { fastify } = await import('fastify')
    const { default: callsign } = await import('@callsign/fastify')
    const app = fastify()
    await expect(
      app.register(callsign, { issuers: { issuer: 'https://auth.example.com', audience: 'x' }, logDecisions: 'loud' as never }).ready(),
    ).rejects.toThrow(/logDecisions/)
  })
})

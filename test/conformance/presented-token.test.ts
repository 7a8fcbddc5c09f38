// presentedToken(auth) on the auth context each adapter stores (req.auth, request.auth, ctx.state.auth):
// the token the request presented (JWT or introspected), never part of the context itself, its JSON or
// the decision events; nothing for a certificate-only call.
import type { DecisionEvent } from '@callsign/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adapters, type RunningApp } from '../support/adapters.js'
import { AUDIENCE, createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'
import { startIntrospectionServer, type IntrospectionServer } from '../support/introspection-server.js'

const expOf = (jwt: string): number => (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp

describe.each(adapters)('$name: presentedToken(auth)', (adapter) => {
  let fx: Fixture
  let as: IntrospectionServer
  let app: RunningApp
  const events: DecisionEvent[] = []

  beforeAll(async () => {
    fx = await createFixture()
    as = await startIntrospectionServer({ issuer: fx.main.issuer, audience: AUDIENCE })
    app = await fx.start(adapter, {
      logger: quiet,
      onDecision: (event) => events.push(event),
      certificateGrants: { [ID.worker]: ['orders:read'] },
      issuers: issuerOption(fx.main, { introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret } }),
    })
  })
  afterAll(async () => {
    await fx?.close()
    await as?.close()
  })

  it('returns the JWT the request presented, with its exp, on every request that presents it (cached verification too)', async () => {
    const token = await sign(fx.main, { sub: 'alice', client_id: ID.frontend, scope: 'orders:read' })
    for (let i = 0; i < 2; i++) {
      const res = await fx.call(app, { path: '/presented', token, cert: fx.certs.frontend })
      expect(res.status).toBe(200)
      expect(res.body.presented).toEqual({ value: token, expiresAt: expOf(token) })
      expect(res.body.json).not.toContain(token.split('.')[2]!)
      expect(JSON.parse(res.body.json as string)).toMatchObject({ credential: 'token', caller: { id: ID.frontend } })
    }
  })

  it('returns an introspected (opaque) token with the exp of the answer', async () => {
    const token = as.issue({ client_id: ID.frontend, sub: 'alice', scope: 'orders:read' })
    const res = await fx.call(app, { path: '/presented', token })
    expect(res.status).toBe(200)
    expect(res.body.presented.value).toBe(token)
    expect(res.body.presented.expiresAt).toBeGreaterThan(Date.now() / 1000)
    expect(res.body.json).not.toContain(token)
  })

  it('returns nothing for a certificate-only call', async () => {
    const res = await fx.call(app, { path: '/presented', cert: fx.certs.worker })
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body.json as string)).toMatchObject({ credential: 'certificate', caller: { id: ID.worker } })
    expect(res.body.presented).toBeNull()
  })

  it('keeps the token out of the decision events', async () => {
    const token = await sign(fx.main, { sub: 'bob', client_id: ID.frontend, scope: 'orders:read' })
    const before = events.length
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
    // Events are reported when the request is authorized or, without a rule, when it closes.
    for (let i = 0; i < 50 && events.length === before; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(events.length).toBeGreaterThan(before)
    const text = JSON.stringify(events.slice(before))
    expect(text).toContain('bob')
    expect(text).not.toContain(token.split('.')[2]!)
    expect(text).not.toContain(token.split('.')[1]!)
  })
})

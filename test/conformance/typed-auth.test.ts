/**
 * The typed path of every adapter: `requireAuth(rule, handler)` runs the handler only with the
 * auth context its type promises (a user for `onBehalfOf: 'required'`, none for `'forbidden'`),
 * and `getAuth` returns that context or throws: a setup `Error` when no `requireAuth` promising it
 * authorized the request, the rule's refusal in dry run. Never `undefined`, never a 500 for bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, DecisionEvent } from '@callsign/core'
import { expectOutcome, forbidden, missingCredentials } from '../support/expectations.js'
import { createFixture, quiet, sign, type Fixture } from '../support/fixtures.js'
import { TYPED_ROUTES, typedAdapters, type TypedAdapter, type TypedApp } from '../support/typed-apps.js'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

const SERVICE = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
const USER = { sub: 'alice', act: { sub: 'svc-a' }, scope: 'orders:read' }
const NOT_AUTHORIZED = /^Callsign: getAuth\(\) ran on a request no requireAuth\(rule\) authorized/
const NO_USER_RULE = /^Callsign: getAuth\(\) ran on a request no requireAuth\(\{ onBehalfOf: 'required' \}\) authorized/

describe.each(typedAdapters)('$name', (adapter: TypedAdapter) => {
  let app: TypedApp
  let dryRun: TypedApp
  const events: DecisionEvent[] = []
  const started: TypedApp[] = []
  const start = async (extra: Partial<CallsignOptions> = {}): Promise<TypedApp> => {
    const running = await adapter.start({ issuers: fx.issuerOptions.main, logger: quiet, ...extra }, fx.tls)
    started.push(running)
    return running
  }
  const get = async (running: TypedApp, path: string, claims?: Record<string, unknown>) =>
    fx.call(running, { path, ...(claims ? { token: await sign(fx.main, claims) } : {}) })

  beforeAll(async () => {
    ;[app, dryRun] = await Promise.all([start(), start({ enforce: false, onDecision: (event) => events.push(event) })])
  })
  afterAll(async () => {
    await Promise.all(started.map((running) => running.close()))
  })

  it("runs a handler for onBehalfOf: 'required' with the user", async () => {
    const res = await get(app, TYPED_ROUTES.user, USER)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ caller: 'svc-a', user: 'alice' })
  })

  it("answers a service-only call on an onBehalfOf: 'required' handler with 403, without running it", async () => {
    expectOutcome(await get(app, TYPED_ROUTES.user, SERVICE), forbidden('on_behalf_of_required', 'user'))
  })

  it("runs a handler for onBehalfOf: 'forbidden' without a user, and refuses a user", async () => {
    const res = await get(app, TYPED_ROUTES.service, SERVICE)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ caller: 'svc-a', user: null })
    expectOutcome(await get(app, TYPED_ROUTES.service, USER), forbidden('on_behalf_of_forbidden', 'caller'))
  })

  it('answers a failing rule with its refusal and no credentials with 401, without running the handler', async () => {
    expectOutcome(await get(app, TYPED_ROUTES.orders, { ...SERVICE, scope: 'other' }), forbidden('insufficient_scope', 'caller', 'orders:read'))
    expectOutcome(await get(app, TYPED_ROUTES.orders), missingCredentials())
    const res = await get(app, TYPED_ROUTES.orders, SERVICE)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ caller: 'svc-a' })
  })

  it('getAuth returns the context a requireAuth before the handler authorized', async () => {
    const res = await get(app, TYPED_ROUTES.getAuth, USER)
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ caller: 'svc-a', user: 'alice' })
    expectOutcome(await get(app, TYPED_ROUTES.getAuth, SERVICE), forbidden('on_behalf_of_required', 'user'))
  })

  it('getAuth throws a setup Error on a route without requireAuth (500), instead of returning undefined', async () => {
    app.errors.length = 0
    const res = await get(app, TYPED_ROUTES.unguarded, USER)
    expect(res.status).toBe(500)
    expect(app.errors).toHaveLength(1)
    expect(app.errors[0]).toBeInstanceOf(Error)
    expect((app.errors[0] as Error).message).toMatch(NOT_AUTHORIZED)
  })

  it('getAuth asking for a user after a requireAuth that does not require one throws a setup Error, even when a user is there', async () => {
    app.errors.length = 0
    expect((await get(app, TYPED_ROUTES.mismatch, USER)).status).toBe(500)
    expect((await get(app, TYPED_ROUTES.mismatch, SERVICE)).status).toBe(500)
    expect(app.errors.map((error) => (error as Error).message)).toEqual([expect.stringMatching(NO_USER_RULE), expect.stringMatching(NO_USER_RULE)])
  })

  it('in dry run, the untyped requireAuth still lets a service-only call through', async () => {
    const res = await get(dryRun, TYPED_ROUTES.plain, SERVICE)
    expect(res.status).toBe(200)
    expect(res.body.auth).toMatchObject({ caller: { id: 'svc-a' }, credential: 'token' })
    expect(res.body.auth).not.toHaveProperty('user')
  })

  it('in dry run, a typed handler still runs when only what its type does not cover fails (a scope)', async () => {
    const res = await get(dryRun, TYPED_ROUTES.orders, { ...SERVICE, scope: 'other' })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ caller: 'svc-a' })
  })

  it('in dry run, a typed handler never runs without what its type promises: the refusal is enforced and reported so', async () => {
    events.length = 0
    expectOutcome(await get(dryRun, TYPED_ROUTES.user, SERVICE), forbidden('on_behalf_of_required', 'user'))
    expect(events.map((event) => [event.stage, event.enforced, event.outcome, event.code])).toEqual([
      ['authorize', false, 'refused', 'on_behalf_of_required'],
      ['authorize', true, 'refused', 'on_behalf_of_required'],
    ])
    expectOutcome(await get(dryRun, TYPED_ROUTES.service, USER), forbidden('on_behalf_of_forbidden', 'caller'))
    expectOutcome(await get(dryRun, TYPED_ROUTES.orders), missingCredentials())
  })

  it("in dry run, getAuth throws the rule's refusal (an AuthError: a 403 from the framework), never a context without the user", async () => {
    dryRun.errors.length = 0
    const res = await get(dryRun, TYPED_ROUTES.getAuth, SERVICE)
    expect(res.status).toBe(403)
    expect(res.headers['www-authenticate']).toMatch(/error="insufficient_scope"/)
    expect(dryRun.errors).toEqual([expect.objectContaining({ name: 'AuthError', code: 'on_behalf_of_required', status: 403 })])
  })

  it('refuses a handler that is not a function when the route is defined', () => {
    expect(() => adapter.requireAuthWith({}, 'handler')).toThrow(new TypeError('Callsign: requireAuth(rule, handler): "handler" must be a function'))
  })
})

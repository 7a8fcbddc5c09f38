/**
 * Mounts, router prefixes and URL rewrites, in every framework: a DPoP proof's `htu` is checked
 * against the URL the client called (RFC 9449 §4.3), not the shorter path a mount hands the
 * middleware; decision events and the RFC 9728 metadata route see that same path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, DecisionEvent } from '@callsign/core'
import { createDpopKey, type DpopKey } from '@callsign/testing'
import type { RunningApp } from '../support/adapters.js'
import { dpopRequest, htuFor, invalidProof } from '../support/dpop.js'
import { accept, expectOutcome } from '../support/expectations.js'
import { createFixture, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'
import { mountStyles, type MountStyle } from '../support/mounted-apps.js'

const HTU_MISMATCH = 'DPoP proof htu does not match the request URI'
const SERVICE = { sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' }
const svc = () => accept({ caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'], binding: 'dpop' })

let fx: Fixture
let key: DpopKey
beforeAll(async () => {
  ;[fx, key] = await Promise.all([createFixture(), createDpopKey('ES256')])
})
afterAll(() => fx?.close())

const bound = (): Promise<string> => sign(fx.main, SERVICE, { dpopJkt: key.jkt })

describe.each(mountStyles.map((style) => [`${style.adapter}: ${style.title}`, style] as const))('%s', (_title: string, style: MountStyle) => {
  let app: RunningApp
  const events: DecisionEvent[] = []
  const options = (extra: Partial<CallsignOptions> = {}): CallsignOptions => ({ issuers: issuerOption(fx.main), logger: quiet, ...extra })
  const started: RunningApp[] = []
  const start = async (extra: Partial<CallsignOptions> = {}, rule?: { enforce?: boolean }): Promise<RunningApp> => {
    const running = await style.start(options(extra), fx.tls, rule)
    started.push(running)
    return running
  }

  beforeAll(async () => {
    app = await start({ onDecision: (event) => events.push(event) })
  })
  afterAll(async () => {
    await Promise.all(started.map((running) => running.close()))
  })

  it(`accepts a proof for the URL the client called (${style.path})`, async () => {
    const res = await fx.call(app, await dpopRequest(app, key, await bound(), { path: style.path }))
    expectOutcome(res, svc())
  })

  it('accepts it with a query string on the request', async () => {
    const res = await fx.call(app, await dpopRequest(app, key, await bound(), { path: `${style.path}?page=2`, proofOptions: { url: htuFor(app, style.path) } }))
    expectOutcome(res, svc())
  })

  it.each(style.stripped)('refuses a proof for the path a mount hands the middleware (%s): 401 invalid_dpop_proof', async (stripped) => {
    const res = await fx.call(app, await dpopRequest(app, key, await bound(), { path: style.path, proofOptions: { url: htuFor(app, stripped) } }))
    expectOutcome(res, invalidProof())
    expect(res.body.detail).toBe(HTU_MISMATCH)
  })

  it('reports the path the client called in decision events, accepted and refused', async () => {
    events.length = 0
    const token = await bound()
    expect((await fx.call(app, await dpopRequest(app, key, token, { path: style.path }))).status).toBe(200)
    expect((await fx.call(app, await dpopRequest(app, key, token, { path: style.path, proofOptions: { url: htuFor(app, style.stripped[0]) } }))).status).toBe(
      401,
    )
    expect(events.map((event) => [event.outcome, event.path])).toEqual([
      ['allowed', style.path],
      ['refused', style.path],
    ])
  })

  it('in dry run, a rule that enforces reports the path the client called', async () => {
    const dryRun: DecisionEvent[] = []
    const running = await start({ enforce: false, onDecision: (event) => dryRun.push(event) }, { enforce: true })
    const res = await fx.call(
      running,
      await dpopRequest(running, key, await bound(), { path: style.path, proofOptions: { url: htuFor(running, style.stripped[0]) } }),
    )
    expectOutcome(res, invalidProof())
    expect(dryRun.map((event) => [event.stage, event.enforced, event.path])).toEqual([
      ['authenticate', false, style.path],
      ['authorize', true, style.path],
    ])
  })

  it('does not serve the protected-resource metadata under the prefix (the well-known URL is at the root)', async () => {
    const running = await start({ resourceMetadata: { resource: 'https://orders.example.org' } })
    const probe = style.path.replace(/\/whoami$/, '/.well-known/oauth-protected-resource')
    const res = await fx.call(running, { path: probe })
    expect(res.status, res.text.slice(0, 200)).not.toBe(200)
    expect(res.body).not.toHaveProperty('resource')
  })
})

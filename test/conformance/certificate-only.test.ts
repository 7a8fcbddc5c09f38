/**
 * mTLS-only calls (`certificateGrants`), in every framework: a request without a token is
 * authenticated by its authorized client certificate alone, with the scopes granted to its SPIFFE
 * ID, no user and no claims; rules, the `callers` ceiling and every certificate check still apply;
 * anything else without a token is refused as before; a token, when sent, is used as usual.
 */
import type { IssuedCertificate } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { adapters, type RunningApp } from '../support/adapters.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Fixture } from '../support/fixtures.js'

const INGRESS = 'spiffe://example.org/ns/istio-system/sa/ingress'
const GRANTS = {
  // The frontend may read on its own authority; the rest of the web namespace may only call /whoami.
  [ID.frontend]: ['orders:read'],
  'spiffe://example.org/ns/web/*': [],
  'spiffe://example.org/ns/batch/*': ['orders:read', 'orders:write', 'a'],
}

describe.each(adapters)('$name: mTLS-only calls (certificateGrants)', (adapter) => {
  let fx: Fixture
  let app: RunningApp
  let ceiling: RunningApp
  let optional: RunningApp
  let proxied: string
  let ingress: IssuedCertificate

  beforeAll(async () => {
    fx = await createFixture()
    ingress = await fx.ca.issueCertificate({ spiffeId: INGRESS })
    const base = { issuers: fx.issuerOptions.main, logger: quiet, certificateGrants: GRANTS }
    ;[app, ceiling, optional] = await Promise.all([
      fx.start(adapter, base),
      // The allowance ceiling still applies: the worker may never write, whatever it is granted.
      fx.start(adapter, { ...base, callers: { 'spiffe://example.org/ns/batch/*': ['orders:read'], [ID.frontend]: ['orders:read'] } }),
      fx.start(adapter, { ...base, credentials: 'optional', mtls: { forwarded: { trustedProxies: { spiffeIds: [INGRESS] }, ca: fx.ca.certPem } } }),
    ])
    proxied = (await fx.startProxy(optional, { format: 'xfcc', clientCertificate: 'optional', clientCert: ingress })).url
  })
  afterAll(() => fx?.close())

  it('authenticates a call without a token by its certificate: caller = SPIFFE ID, granted scopes, no user, no claims', async () => {
    const res = await fx.call(app, { path: '/orders', cert: fx.certs.frontend })
    expectAccepted(res, {
      caller: { id: ID.frontend, source: 'mtls' },
      scopes: ['orders:read'],
      binding: 'mtls',
      credential: 'certificate',
      peer: { ...fx.certs.frontend, spiffeId: ID.frontend, verification: 'tls' },
    })
    // The most specific pattern applies: the admin UI (web/*) is granted nothing.
    expectAccepted(await fx.call(app, { path: '/whoami', cert: fx.certs.adminUi }), {
      caller: { id: ID.adminUi, source: 'mtls' },
      binding: 'mtls',
      credential: 'certificate',
      peer: { ...fx.certs.adminUi, spiffeId: ID.adminUi },
    })
    const refused = await fx.call(app, { path: '/orders', cert: fx.certs.adminUi })
    expectRefusal(refused, { status: 403, code: 'insufficient_scope', side: 'caller', scope: 'orders:read' })
    expect(refused.body.detail).toBe('the calling service is not granted a required scope (certificateGrants)')
  })

  it('applies every rule: scopes beyond the grant, callers, onBehalfOf, anyScopes, senderConstraint', async () => {
    expectRefusal(await fx.call(app, { method: 'POST', path: '/orders', cert: fx.certs.frontend }), {
      status: 403,
      code: 'insufficient_scope',
      side: 'caller',
      scope: 'orders:write',
    })
    // The worker holds orders:write, but POST /orders needs a user: a certificate never names one.
    expectRefusal(await fx.call(app, { method: 'POST', path: '/orders', cert: fx.certs.worker }), { status: 403, code: 'on_behalf_of_required', side: 'user' })
    expectRefusal(await fx.call(app, { path: '/batch', cert: fx.certs.frontend }), { status: 403, code: 'caller_forbidden', side: 'caller' })
    expect((await fx.call(app, { path: '/batch', cert: fx.certs.worker })).status).toBe(200)
    expect((await fx.call(app, { path: '/service-only', cert: fx.certs.worker })).status).toBe(200)
    expect((await fx.call(app, { path: '/any', cert: fx.certs.worker })).status).toBe(200)
    // No bearer secret travels: the certificate is proven in the handshake, so a sender-constrained route accepts it.
    expect((await fx.call(app, { path: '/constrained', cert: fx.certs.worker })).status).toBe(200)
  })

  it('keeps the callers allowance as a ceiling over the grant', async () => {
    expect((await fx.call(ceiling, { path: '/orders', cert: fx.certs.worker })).status).toBe(200)
    expectRefusal(await fx.call(ceiling, { path: '/any', cert: fx.certs.worker }), { status: 403, code: 'caller_scope_exceeded', side: 'caller', scope: 'a b' })
    // Granted (web/*) but not an allowed caller.
    expectRefusal(await fx.call(ceiling, { path: '/whoami', cert: fx.certs.adminUi }), { status: 403, code: 'caller_forbidden', side: 'caller' })
  })

  it('refuses calls without a token whose certificate is absent, untrusted, expired, not granted, or without a SPIFFE ID', async () => {
    expectRefusal(await fx.call(app, { path: '/whoami' }), { status: 401, code: 'credentials_missing' })
    expectRefusal(await fx.call(app, { path: '/whoami', cert: fx.certs.stranger }), { status: 401, code: 'credentials_missing' })
    expectRefusal(await fx.call(app, { path: '/whoami', cert: fx.certs.noSan }), { status: 401, code: 'credentials_missing' })
    expectRefusal(await fx.call(app, { path: '/whoami', cert: fx.certs.untrusted }), { status: 401, code: 'peer_unauthorized' })
    expectRefusal(await fx.call(app, { path: '/whoami', cert: fx.certs.expired }), { status: 401, code: 'peer_unauthorized' })
    // A client id lookalike is no grant: the pattern is a SPIFFE prefix on segment boundaries.
    expectRefusal(await fx.call(app, { path: '/whoami', cert: fx.certs.evil }), { status: 401, code: 'credentials_missing' })
  })

  it('uses the token when one is sent: its scopes, not the grant, and every token check', async () => {
    const token = await sign(fx.main, { sub: ID.frontend, client_id: ID.frontend, scope: 'profile' })
    const res = await fx.call(app, { path: '/orders', cert: fx.certs.frontend, token })
    expectRefusal(res, { status: 403, code: 'insufficient_scope', side: 'caller', scope: 'orders:read' })
    expect(res.body.detail).toBe('the token lacks a required scope')
    expectRefusal(await fx.call(app, { path: '/orders', cert: fx.certs.frontend, token: `${token}x` }), { status: 401, code: 'invalid_token' })
    expectRefusal(await fx.call(app, { path: '/orders', cert: fx.certs.frontend, authorization: 'Basic Zm9vOmJhcg==' }), {
      status: 401,
      code: 'credentials_missing',
    })
  })

  it('accepts the certificate a trusted proxy forwarded (source forwarded), never the proxy itself, and leaves others anonymous with credentials: optional', async () => {
    const forwarded = await fx.call({ ...optional, url: proxied }, { path: '/orders', cert: fx.certs.worker })
    expectAccepted(forwarded, {
      caller: { id: ID.worker, source: 'forwarded' },
      scopes: ['orders:read', 'orders:write', 'a'],
      binding: 'mtls',
      credential: 'certificate',
      peer: { ...fx.certs.worker, spiffeId: ID.worker, verification: 'forwarded-certificate' },
    })
    // A client without a certificate behind the proxy: nothing forwarded, the proxy's identity is not used.
    expect((await fx.call({ ...optional, url: proxied }, { path: '/public' })).body).toEqual({ auth: null })
    expectRefusal(await fx.call({ ...optional, url: proxied }, { path: '/whoami' }), { status: 401, code: 'credentials_missing' })
    expect((await fx.call(optional, { path: '/public', cert: fx.certs.stranger })).body).toEqual({ auth: null })
    expect((await fx.call(optional, { path: '/public', cert: fx.certs.frontend })).body.auth).toMatchObject({
      credential: 'certificate',
      caller: { id: ID.frontend },
    })
  })
})

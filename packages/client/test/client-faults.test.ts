/**
 * createClient under faults, end to end: the test issuer's real token endpoint over https (with
 * its outage modes) and Callsign-protected Express apps. The authorization server down, slow or
 * answering garbage; nonces required by a service; the workload certificate rotated on disk;
 * 1,000 concurrent calls at a cold start; a stolen token; a certificate-only caller as
 * `onBehalfOf`; the wrong server; events without tokens; bad options. Only the public
 * `createClient` of the built package is used. Nothing waits on time: the rotation is awaited
 * through its event.
 */
import type { AuthContext, CallsignOptions } from '@callsign/core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthorizationServerUnavailableError,
  ClientError,
  createClient,
  ServerIdentityError,
  type CallsignClient,
  type ClientEvent,
  type ClientOptions,
} from '@callsign/client'
import { createDpopKey, createDpopProof, createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'
import { call } from '../../../test/support/client.js'
import { fetchTrusting, startHandlerApp, writeIdentityFiles, type HandlerApp, type IdentityFiles } from '../../../test/support/client-apps.js'

const FRONTEND_ID = 'spiffe://example.org/ns/web/sa/frontend'
const ORDERS_ID = 'spiffe://example.org/ns/orders/sa/orders'
const PAYMENTS_ID = 'spiffe://example.org/ns/payments/sa/payments'
const NONCE_SECRET = 'client-faults-test-dpop-nonce-secret-0123456789'

let ca: TestCa
let issuer: TestIssuer
let trust: ReturnType<typeof fetchTrusting>
let frontend: IssuedCertificate
let stranger: IssuedCertificate
let identity: IdentityFiles
let orders: HandlerApp
let ordersNonce: HandlerApp
let payments: HandlerApp
let exchanger: HandlerApp
const clients: CallsignClient[] = []

/** What a service saw: caller, user, binding and the token's confirmation. */
const seen = (auth: AuthContext) => ({ caller: auth.caller.id, user: auth.user?.sub, binding: auth.binding, cnf: auth.claims?.cnf })

const guarded =
  (extra: Partial<CallsignOptions> = {}) =>
  (url: string): CallsignOptions => ({
    issuers: { issuer: issuer.issuer, audience: url },
    mtls: 'required',
    senderConstraint: 'required',
    fetch: trust,
    ...extra,
  })

beforeAll(async () => {
  ca = await createTestCa()
  const [issuerCert, ordersServer, paymentsServer, frontendCert, strangerCert] = await Promise.all([
    ca.issueServerCertificate(),
    ca.issueServerCertificate({ spiffeId: ORDERS_ID }),
    ca.issueServerCertificate({ spiffeId: PAYMENTS_ID }),
    ca.issueCertificate({ spiffeId: FRONTEND_ID }),
    ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/other/sa/stranger' }),
  ])
  frontend = frontendCert
  stranger = strangerCert
  issuer = await startTestIssuer({
    tls: { certPem: issuerCert.certPem, keyPem: issuerCert.keyPem, clientCa: ca.certPem },
    tokenEndpoint: { clients: [{ clientId: FRONTEND_ID, auth: 'tls_client_auth' }] },
  })
  trust = fetchTrusting(ca.certPem)
  identity = await writeIdentityFiles(frontend, ca.certPem)
  const tls = (cert: IssuedCertificate) => ({ key: cert.keyPem, cert: cert.certPem, ca: ca.certPem })
  ;[orders, ordersNonce, payments] = await Promise.all([
    startHandlerApp('express', tls(ordersServer), guarded(), async (auth) => seen(auth)),
    startHandlerApp('express', tls(ordersServer), guarded({ dpop: { mode: 'required', nonce: { secret: NONCE_SECRET } } }), async (auth) => seen(auth)),
    startHandlerApp('express', tls(paymentsServer), guarded(), async (auth) => seen(auth)),
  ])
  // A service that lets certificate-only callers in, then tries to call payments for them.
  exchanger = await startHandlerApp('express', tls(ordersServer), guarded({ certificateGrants: { [FRONTEND_ID]: ['orders:read'] } }), async (auth) => {
    const client = newClient({ services: { payments: { url: payments.url, spiffeId: PAYMENTS_ID } } })
    const res = await client.service('payments').fetch('/charge', { onBehalfOf: auth })
    return { status: res.status }
  })
})
afterEach(() => {
  issuer.setOutage('none')
  issuer.setLatency(0)
})
afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()))
  await Promise.allSettled([orders, ordersNonce, payments, exchanger].map((app) => app?.close()))
  await issuer?.close()
  await trust?.close()
  await identity?.remove()
})

/** Events, and a promise of the next one of a type. */
function recorder() {
  const events: ClientEvent[] = []
  const waiting: Array<{ type: string; resolve: (event: ClientEvent) => void }> = []
  return {
    events,
    onEvent: (event: ClientEvent) => {
      events.push(event)
      for (const waiter of waiting.splice(0)) {
        if (waiter.type === event.type) waiter.resolve(event)
        else waiting.push(waiter)
      }
    },
    next: (type: string) => new Promise<ClientEvent>((resolve) => waiting.push({ type, resolve })),
    count: (type: string) => events.filter((event) => event.type === type).length,
  }
}

/** A client of frontend (tls_client_auth, identity files), closed after the file. */
function newClient(extra: Partial<ClientOptions> = {}): CallsignClient {
  const client = createClient({
    issuer: issuer.issuer,
    clientId: FRONTEND_ID,
    auth: 'tls_client_auth',
    identity: identity.identity,
    dpop: true,
    services: { orders: { url: orders.url, spiffeId: ORDERS_ID } },
    ...extra,
  })
  clients.push(client)
  return client
}

describe('the authorization server fails', () => {
  it.each([
    ['down (503)', 'down', 'http_status'],
    ['hanging (a small timeout ends the call)', 'hang', 'timeout'],
    ['answering garbage', 'garbage', 'invalid_response'],
  ] as const)('at start, %s: AuthorizationServerUnavailableError, no hang', async (_name, outage, reason) => {
    issuer.setOutage(outage)
    const recorded = recorder()
    const client = newClient({ timeout: 300, onEvent: recorded.onEvent })
    const error = await client
      .service('orders')
      .fetch('/orders')
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuthorizationServerUnavailableError)
    expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason })
  })

  it('at start, resetting connections: AuthorizationServerUnavailableError (network)', async () => {
    // Over loopback http: a real TCP reset (over TLS the kit closes the connection instead: next test).
    const plain = await startTestIssuer({
      tokenEndpoint: { clients: [{ clientId: FRONTEND_ID, auth: 'client_secret_basic', clientSecret: 'not-a-real-secret' }] },
    })
    try {
      plain.setOutage('reset')
      const client = newClient({ issuer: plain.issuer, auth: 'client_secret_basic', clientSecret: 'not-a-real-secret', timeout: 2_000 })
      const error = await client
        .service('orders')
        .fetch('/orders')
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(AuthorizationServerUnavailableError)
      expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'network' })
    } finally {
      await plain.close()
    }
  })

  it('at start, over TLS, connections closed without an answer: AuthorizationServerUnavailableError (network), no hang', async () => {
    issuer.setOutage('reset')
    const error = await newClient({ timeout: 2_000 })
      .service('orders')
      .fetch('/orders')
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuthorizationServerUnavailableError)
    expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'network' })
  })

  it('slow (latency above the timeout): a timeout, not a hang', async () => {
    issuer.setLatency(2_000)
    const client = newClient({ timeout: 200 })
    const error = await client
      .service('orders')
      .fetch('/orders')
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'timeout' })
  })

  it('down after a token is cached: calls go on with the cached token, no new token request', async () => {
    const client = newClient()
    expect((await client.service('orders').fetch('/orders')).status).toBe(200)
    const before = issuer.tokenRequests.length
    for (const outage of ['down', 'reset', 'hang', 'garbage'] as const) {
      issuer.setOutage(outage)
      const res = await client.service('orders').fetch('/orders')
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ caller: FRONTEND_ID, binding: 'dpop' })
    }
    expect(issuer.tokenRequests.length).toBe(before)
  })
})

describe('DPoP nonce required by a service', () => {
  it('the first call is answered use_dpop_nonce and retried exactly once; the nonce is then remembered', async () => {
    const recorded = recorder()
    const client = newClient({ services: { orders: { url: ordersNonce.url, spiffeId: ORDERS_ID } }, onEvent: recorded.onEvent })
    const res = await client.service('orders').fetch('/orders')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ caller: FRONTEND_ID, binding: 'dpop' })
    expect(recorded.events.filter((event) => event.type === 'retry')).toEqual([
      expect.objectContaining({ type: 'retry', reason: 'use_dpop_nonce', service: 'orders' }),
    ])
    expect((await client.service('orders').fetch('/orders')).status).toBe(200)
    expect(recorded.count('retry')).toBe(1)
  })
})

describe('the workload certificate rotated on disk', () => {
  it('new connections present the new certificate and a certificate-bound token is requested for it', async () => {
    const files = await writeIdentityFiles(frontend, ca.certPem)
    try {
      const recorded = recorder()
      const client = newClient({ identity: files.identity, dpop: false, onEvent: recorded.onEvent })
      const first = await (await client.service('orders').fetch('/orders')).json()
      expect(first).toMatchObject({ caller: FRONTEND_ID, binding: 'mtls', cnf: { 'x5t#S256': frontend.x5tS256 } })
      const rotated = await ca.issueCertificate({ spiffeId: FRONTEND_ID })
      const reloaded = recorded.next('identity_reload')
      await files.rotate(rotated)
      // The files are re-read at most once a second, on use: call until the reload is reported.
      let done = false
      void reloaded.then(() => (done = true))
      while (!done) {
        const res = await client.service('orders').fetch('/orders')
        expect(res.status).toBe(200)
        await res.body?.cancel()
        if (!done) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const after = await (await client.service('orders').fetch('/orders')).json()
      expect(after).toMatchObject({ caller: FRONTEND_ID, binding: 'mtls', cnf: { 'x5t#S256': rotated.x5tS256 } })
      // One token per certificate: the one bound to the old certificate was not sent again.
      expect(recorded.events.filter((event) => event.type === 'token_request')).toEqual([
        expect.objectContaining({ binding: 'mtls', grant: 'client_credentials' }),
        expect.objectContaining({ binding: 'mtls', grant: 'client_credentials' }),
      ])
    } finally {
      await files.remove()
    }
  })
})

describe('single flight', () => {
  it('1,000 concurrent calls at a cold start make exactly one token request per cache key', async () => {
    const recorded = recorder()
    const client = newClient({
      services: { orders: { url: orders.url, spiffeId: ORDERS_ID }, payments: { url: payments.url, spiffeId: PAYMENTS_ID } },
      onEvent: recorded.onEvent,
    })
    const before = issuer.tokenRequests.length
    const calls = Array.from({ length: 1000 }, async (_, i) => {
      const res = await client.service(i % 2 === 0 ? 'orders' : 'payments').fetch('/orders')
      await res.body?.cancel()
      return res.status
    })
    expect(new Set(await Promise.all(calls))).toEqual(new Set([200]))
    const made = issuer.tokenRequests.slice(before)
    expect(made).toEqual([
      expect.objectContaining({ grantType: 'client_credentials', clientId: FRONTEND_ID, status: 200 }),
      expect.objectContaining({ grantType: 'client_credentials', clientId: FRONTEND_ID, status: 200 }),
    ])
    expect(
      recorded.events
        .filter((event) => event.type === 'token_request')
        .map((event) => event.service)
        .sort(),
    ).toEqual(['orders', 'payments'])
  })
})

describe('a stolen token', () => {
  it('a DPoP-bound token copied from headers() is refused without the key', async () => {
    const client = newClient()
    const url = `${orders.url}/orders`
    const { authorization } = await client.service('orders').headers({ method: 'GET', url })
    const token = authorization.replace(/^DPoP /, '')
    const thief = await createDpopKey()
    const withOwnProof = await call(orders.url, ca.certPem, {
      path: '/orders',
      cert: frontend,
      authorization: `DPoP ${token}`,
      headers: { dpop: await createDpopProof(thief, { method: 'GET', url, accessToken: token }) },
    })
    expect(withOwnProof.status).toBe(401)
    expect((await call(orders.url, ca.certPem, { path: '/orders', cert: frontend, token })).status).toBe(401)
    expect((await call(orders.url, ca.certPem, { path: '/orders', cert: stranger, authorization: `DPoP ${token}` })).status).toBe(401)
  })

  it('a certificate-bound token copied from headers() is refused from another certificate', async () => {
    const client = newClient({ dpop: false })
    const { authorization } = await client.service('orders').headers({ method: 'GET', url: '/orders' })
    expect(authorization).toMatch(/^Bearer /)
    const token = authorization.slice('Bearer '.length)
    expect((await call(orders.url, ca.certPem, { path: '/orders', cert: frontend, token })).status).toBe(200)
    expect((await call(orders.url, ca.certPem, { path: '/orders', cert: stranger, token })).status).toBe(401)
    expect((await call(orders.url, ca.certPem, { path: '/orders', token })).status).toBe(401)
  })
})

describe('on behalf of whom', () => {
  it('a certificate-only auth context passed as onBehalfOf: ClientError not_exchangeable', async () => {
    const res = await call(exchanger.url, ca.certPem, { path: '/anything', cert: frontend })
    expect(res.status, res.text).toBe(502)
    expect(res.body.error).toMatchObject({ name: 'ClientError', code: 'not_exchangeable' })
  })
})

describe('the server that answers', () => {
  it('a service whose certificate carries another SPIFFE ID: ServerIdentityError, no token request', async () => {
    const recorded = recorder()
    const client = newClient({ services: { payments: { url: orders.url, spiffeId: PAYMENTS_ID } }, onEvent: recorded.onEvent })
    const error = await client
      .service('payments')
      .fetch('/charge')
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ServerIdentityError)
    expect(error).toBeInstanceOf(ClientError)
    expect(error).toMatchObject({ code: 'server_identity_mismatch', expected: PAYMENTS_ID, actual: ORDERS_ID })
  })
})

describe('events', () => {
  it('token_request, retry and identity_reload events carry no token', async () => {
    const files = await writeIdentityFiles(frontend, ca.certPem)
    try {
      const recorded = recorder()
      const client = newClient({ identity: files.identity, services: { orders: { url: ordersNonce.url, spiffeId: ORDERS_ID } }, onEvent: recorded.onEvent })
      expect((await client.service('orders').fetch('/orders')).status).toBe(200)
      const { authorization, dpop } = await client.service('orders').headers({ method: 'GET', url: '/orders' })
      const reloaded = recorded.next('identity_reload')
      await files.rotate(await ca.issueCertificate({ spiffeId: FRONTEND_ID }))
      let done = false
      void reloaded.then(() => (done = true))
      while (!done) {
        await (await client.service('orders').fetch('/orders')).body?.cancel()
        if (!done) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const types = new Set(recorded.events.map((event) => event.type))
      expect([...types]).toEqual(expect.arrayContaining(['token_request', 'retry', 'identity_reload']))
      const json = JSON.stringify(recorded.events)
      const token = authorization.replace(/^DPoP /, '')
      expect(json).not.toContain(token)
      expect(json).not.toContain(token.split('.')[2])
      expect(json).not.toContain(dpop!)
      expect(json).not.toContain(frontend.keyPem.split('\n')[1])
    } finally {
      await files.remove()
    }
  })
})

describe('bad options', () => {
  type Options = Record<string, unknown>
  const base = (): Options => ({ issuer: issuer.issuer, clientId: FRONTEND_ID, auth: 'tls_client_auth', identity: identity.identity, services: {} })
  it.each<[string, (options: Options) => Options, RegExp]>([
    ['an unknown key', (o) => ({ ...o, retries: 3 }), /"retries" is not a known option/],
    ['services missing', (o) => ({ ...o, services: undefined }), /"services"/],
    ['onEvent not a function', (o) => ({ ...o, onEvent: 'log' }), /"onEvent" must be a function/],
    ['a service url that is not https', (o) => ({ ...o, services: { orders: { url: 'http://orders.internal' } } }), /"services\.orders\.url"/],
    ['tls_client_auth without identity', (o) => ({ ...o, identity: undefined }), /"identity" is required/],
    ['a timeout that is not a number', (o) => ({ ...o, timeout: '5s' }), /"timeout"/],
  ])('%s: a TypeError naming the option', (_name, change, message) => {
    const options = change(base()) as unknown as ClientOptions
    expect(() => createClient(options)).toThrow(TypeError)
    expect(() => createClient(options)).toThrow(message)
  })
})

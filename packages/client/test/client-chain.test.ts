/**
 * createClient end to end, in every adapter: the test issuer's real token endpoint over https
 * (tls_client_auth, token exchange, DPoP, certificate-bound tokens); frontend, orders and
 * payments are Callsign-protected HTTPS apps; frontend's client calls orders as itself and for
 * alice, orders' handler calls payments for alice with its own client. Payments sees the whole
 * chain. Only the public `createClient` of the built package is used.
 */
import type { AuthContext } from '@callsign/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient, type CallsignClient, type ClientEvent } from '@callsign/client'
import { createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'
import { call } from '../../../test/support/client.js'
import { CHAIN_ADAPTERS, fetchTrusting, startHandlerApp, writeIdentityFiles, type IdentityFiles } from '../../../test/support/client-apps.js'

const FRONTEND_ID = 'spiffe://example.org/ns/web/sa/frontend'
const ORDERS_ID = 'spiffe://example.org/ns/orders/sa/orders'
const PAYMENTS_ID = 'spiffe://example.org/ns/payments/sa/payments'

let ca: TestCa
let issuer: TestIssuer
let trust: ReturnType<typeof fetchTrusting>
const certs = {} as Record<'frontendServer' | 'ordersServer' | 'paymentsServer' | 'frontend' | 'orders', IssuedCertificate>
const files = {} as Record<'frontend' | 'orders', IdentityFiles>

beforeAll(async () => {
  ca = await createTestCa()
  const [issuerCert, frontendServer, ordersServer, paymentsServer, frontend, orders] = await Promise.all([
    ca.issueServerCertificate(),
    ca.issueServerCertificate({ spiffeId: FRONTEND_ID }),
    ca.issueServerCertificate({ spiffeId: ORDERS_ID }),
    ca.issueServerCertificate({ spiffeId: PAYMENTS_ID }),
    ca.issueCertificate({ spiffeId: FRONTEND_ID }),
    ca.issueCertificate({ spiffeId: ORDERS_ID }),
  ])
  Object.assign(certs, { frontendServer, ordersServer, paymentsServer, frontend, orders })
  issuer = await startTestIssuer({
    tls: { certPem: issuerCert.certPem, keyPem: issuerCert.keyPem, clientCa: ca.certPem },
    tokenEndpoint: {
      clients: [
        { clientId: FRONTEND_ID, auth: 'tls_client_auth' },
        { clientId: ORDERS_ID, auth: 'tls_client_auth' },
      ],
    },
  })
  trust = fetchTrusting(ca.certPem)
  files.frontend = await writeIdentityFiles(frontend, ca.certPem)
  files.orders = await writeIdentityFiles(orders, ca.certPem)
})
afterAll(async () => {
  await issuer?.close()
  await trust?.close()
  await Promise.all(Object.values(files).map((f) => f.remove()))
})

/** What a service saw, from its verified auth context. */
const seen = (auth: AuthContext) => ({
  caller: auth.caller.id,
  callerSource: auth.caller.source,
  user: auth.user?.sub,
  binding: auth.binding,
  act: auth.claims?.act,
  scope: auth.claims?.scope,
  cnf: auth.claims?.cnf,
})

describe.each(CHAIN_ADAPTERS)('%s', (adapter) => {
  describe.each(['dpop', 'mtls'] as const)('%s-bound tokens', (binding) => {
    const closers: Array<() => Promise<void>> = []
    const events: ClientEvent[] = []
    let frontendClient: CallsignClient
    let ordersClient: CallsignClient
    let frontendUrl: string

    const guarded = (url: string) => ({
      issuers: { issuer: issuer.issuer, audience: url },
      mtls: 'required' as const,
      senderConstraint: 'required' as const,
      fetch: trust,
    })

    beforeAll(async () => {
      const tlsOf = (cert: IssuedCertificate) => ({ key: cert.keyPem, cert: cert.certPem, ca: ca.certPem })
      const payments = await startHandlerApp(adapter, tlsOf(certs.paymentsServer), guarded, async (auth) => seen(auth), { scopes: ['payments:charge'] })
      closers.push(payments.close)
      const orders = await startHandlerApp(
        adapter,
        tlsOf(certs.ordersServer),
        guarded,
        async (auth, request) => {
          if (request.path !== '/checkout') return { orders: seen(auth) }
          const res = await ordersClient.service('payments').fetch('/charge', { method: 'POST', body: '{"amount":42}', onBehalfOf: auth })
          return { orders: seen(auth), payments: await res.json() }
        },
        { scopes: ['orders:read'] },
      )
      closers.push(orders.close)
      const frontend = await startHandlerApp(
        adapter,
        tlsOf(certs.frontendServer),
        (url) => ({ issuers: { issuer: issuer.issuer, audience: url }, fetch: trust }),
        async (auth) => {
          const res = await frontendClient.service('orders').fetch('/checkout', { onBehalfOf: auth })
          return { frontend: seen(auth), status: res.status, ...((await res.json()) as object) }
        },
      )
      closers.push(frontend.close)
      frontendUrl = frontend.url
      const dpop = binding === 'dpop'
      frontendClient = createClient({
        issuer: issuer.issuer,
        clientId: FRONTEND_ID,
        auth: 'tls_client_auth',
        identity: files.frontend.identity,
        dpop,
        services: { orders: { url: orders.url, spiffeId: ORDERS_ID, scopes: ['orders:read', 'payments:charge'] } },
        onEvent: (event) => events.push(event),
      })
      ordersClient = createClient({
        issuer: issuer.issuer,
        clientId: ORDERS_ID,
        auth: 'tls_client_auth',
        identity: files.orders.identity,
        dpop,
        services: { payments: { url: payments.url, spiffeId: PAYMENTS_ID, scopes: ['payments:charge'] } },
        onEvent: (event) => events.push(event),
      })
      closers.push(
        () => frontendClient.close(),
        () => ordersClient.close(),
      )
    })
    afterAll(async () => {
      await Promise.allSettled(closers.reverse().map((close) => close()))
    })

    const cnfOf = (cert: IssuedCertificate) => (binding === 'mtls' ? { 'x5t#S256': cert.x5tS256 } : { jkt: expect.any(String) })

    it('frontend calls orders as itself', async () => {
      const res = await frontendClient.service('orders').fetch('/orders')
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({
        orders: {
          caller: FRONTEND_ID,
          callerSource: 'mtls',
          user: undefined,
          binding,
          act: undefined,
          scope: 'orders:read payments:charge',
          cnf: cnfOf(certs.frontend),
        },
      })
    })

    it('frontend calls orders for alice, orders calls payments for alice: payments sees the whole chain', async () => {
      const alice = await issuer.signAccessToken(
        { sub: 'user:alice', client_id: 'web-app', scope: 'orders:read payments:charge profile' },
        { audience: frontendUrl },
      )
      const res = await call(frontendUrl, ca.certPem, { token: alice })
      expect(res.status, res.text).toBe(200)
      expect(res.body.frontend).toMatchObject({ user: 'user:alice', caller: 'web-app', binding: 'bearer' })
      expect(res.body.orders).toEqual({
        caller: FRONTEND_ID,
        callerSource: 'mtls',
        user: 'user:alice',
        binding,
        act: { sub: FRONTEND_ID },
        scope: 'orders:read payments:charge',
        cnf: cnfOf(certs.frontend),
      })
      expect(res.body.payments).toEqual({
        caller: ORDERS_ID,
        callerSource: 'mtls',
        user: 'user:alice',
        binding,
        act: { sub: ORDERS_ID, act: { sub: FRONTEND_ID } },
        scope: 'payments:charge',
        cnf: cnfOf(certs.orders),
      })
      expect(JSON.stringify(events)).not.toContain(alice)
      const exchanges = events.filter((event) => event.type === 'token_request' && event.grant === 'token_exchange')
      expect(exchanges.map((event) => [event.service, event.binding])).toEqual([
        ['orders', binding],
        ['payments', binding],
      ])
    })

    it('a second call for alice reuses both exchanged tokens (no new token request)', async () => {
      const alice = await issuer.signAccessToken({ sub: 'user:alice', client_id: 'web-app', scope: 'orders:read payments:charge' }, { audience: frontendUrl })
      expect((await call(frontendUrl, ca.certPem, { token: alice })).status).toBe(200)
      const before = issuer.tokenRequests.length
      const again = await call(frontendUrl, ca.certPem, { token: alice })
      expect(again.status, again.text).toBe(200)
      expect(again.body.payments.act).toEqual({ sub: ORDERS_ID, act: { sub: FRONTEND_ID } })
      expect(issuer.tokenRequests.length).toBe(before)
    })
  })
})

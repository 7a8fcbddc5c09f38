/**
 * `services.<name>.audience`: RFC 8693 `audience` values sent with every token request, beside
 * `resource`, for authorization servers that scope tokens by audience. Against the test issuer's
 * real token endpoint (which puts both in `aud`) and a real Callsign-protected service that
 * expects only the logical name: with `audience`, client credentials and token exchange both get
 * a token the service accepts; without it, the service refuses the token.
 */
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCallsign, type AuthContext } from '@callsign/core'
import { createClient, ServiceRefusedError, type CallsignClient, type ServiceOptions } from '@callsign/client'
import { createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'
import { fetchTrusting, startHandlerApp, type HandlerApp } from '../../../test/support/client-apps.js'

const FRONTEND_ID = 'spiffe://example.org/ns/web/sa/frontend'
const ORDERS_API = 'orders-api'

let ca: TestCa
let issuer: TestIssuer
let frontend: IssuedCertificate
let orders: HandlerApp
let trust: ReturnType<typeof fetchTrusting>
const clients: CallsignClient[] = []

beforeAll(async () => {
  ca = await createTestCa()
  const [issuerCert, ordersCert, frontendCert] = await Promise.all([
    ca.issueServerCertificate(),
    ca.issueServerCertificate(),
    ca.issueCertificate({ spiffeId: FRONTEND_ID }),
  ])
  frontend = frontendCert
  issuer = await startTestIssuer({
    tls: { certPem: issuerCert.certPem, keyPem: issuerCert.keyPem, clientCa: ca.certPem },
    tokenEndpoint: { clients: [{ clientId: FRONTEND_ID, auth: 'tls_client_auth' }] },
  })
  trust = fetchTrusting(ca.certPem)
  // The service knows itself by its logical name only.
  orders = await startHandlerApp(
    'express',
    { key: ordersCert.keyPem, cert: ordersCert.certPem, ca: ca.certPem },
    () => ({ issuers: { issuer: issuer.issuer, audience: ORDERS_API }, mtls: 'required', fetch: trust, logger: { warn() {} } }),
    async (auth) => ({ caller: auth.caller.id, user: auth.user?.sub ?? null, aud: auth.claims?.aud }),
  )
})
afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()))
  await orders?.close()
  await issuer?.close()
  await trust?.close()
})

const clientFor = (service: Partial<ServiceOptions>): CallsignClient => {
  const client = createClient({
    issuer: issuer.issuer,
    clientId: FRONTEND_ID,
    auth: 'tls_client_auth',
    identity: { cert: frontend.certPem, key: frontend.keyPem, ca: ca.certPem },
    services: { orders: { url: orders.url, ...service } },
  })
  clients.push(client)
  return client
}

/** A Callsign-verified auth context for alice's token at the frontend (what `req.auth` would be). */
async function aliceAtFrontend(): Promise<AuthContext> {
  const guard = createCallsign({ issuers: { issuer: issuer.issuer, audience: 'https://frontend.example' }, fetch: trust, logger: { warn() {} } })
  const token = await issuer.signAccessToken(
    { sub: 'alice', client_id: 'spiffe://example.org/ns/edge/sa/gateway', scope: 'orders:read' },
    { audience: 'https://frontend.example' },
  )
  const auth = await guard.authenticate({ method: 'GET', url: '/', headers: { host: 'frontend.example', authorization: `Bearer ${token}` }, socket: {} })
  await guard.close()
  return auth!
}

describe('services.<name>.audience', () => {
  it('client credentials: the token carries the audience beside the resource, and the service accepts it', async () => {
    const before = issuer.tokenRequests.length
    const response = await clientFor({ audience: ORDERS_API }).service('orders').fetch('/orders')
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ caller: FRONTEND_ID, user: null, aud: [orders.url, ORDERS_API] })
    expect(issuer.tokenRequests.slice(before)).toEqual([expect.objectContaining({ grantType: 'client_credentials', status: 200 })])
  })

  it('token exchange for a user sends it too', async () => {
    const client = clientFor({ audience: [ORDERS_API, ORDERS_API] })
    const { authorization } = await client.service('orders').headers({ method: 'GET', url: '/orders', onBehalfOf: await aliceAtFrontend() })
    expect(decodeJwt(authorization.split(' ')[1]!)).toMatchObject({ sub: 'alice', aud: [orders.url, ORDERS_API], act: { sub: FRONTEND_ID } })
    const response = await client.service('orders').fetch('/orders', { onBehalfOf: await aliceAtFrontend() })
    expect(await response.json()).toMatchObject({ user: 'alice' })
  })

  it('without it, the token is for the resource only and the service refuses it', async () => {
    const error = await clientFor({})
      .service('orders')
      .fetch('/orders')
      .catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(ServiceRefusedError)
    expect(error).toMatchObject({ status: 401 })
  })
})

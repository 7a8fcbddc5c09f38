/**
 * `issuerCa`: whom the client trusts for the authorization server's certificate. The default is
 * `identity.ca` (one private CA for the authorization server and the services); an authorization
 * server whose certificate comes from another CA (a public one, in production) is reached with
 * `issuerCa` set to that CA, or `'system'` for Node's roots, while services stay checked against
 * `identity.ca`. A real TLS token endpoint (tls_client_auth) and a real mTLS service, two test CAs.
 */
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient, type CallsignClient, type ClientOptions } from '@callsign/client'
import { createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'

const FRONTEND_ID = 'spiffe://example.org/ns/web/sa/frontend'

let mesh: TestCa
let other: TestCa
let frontend: IssuedCertificate
let issuer: TestIssuer
let service: Server
let serviceUrl: string
const clients: CallsignClient[] = []

beforeAll(async () => {
  ;[mesh, other] = await Promise.all([createTestCa(), createTestCa()])
  frontend = await mesh.issueCertificate({ spiffeId: FRONTEND_ID })
  // The authorization server's certificate comes from the other CA; it trusts the mesh CA for client certificates.
  const asCert = await other.issueServerCertificate()
  issuer = await startTestIssuer({
    tls: { certPem: asCert.certPem, keyPem: asCert.keyPem, clientCa: mesh.certPem },
    tokenEndpoint: { clients: [{ clientId: FRONTEND_ID, auth: 'tls_client_auth' }] },
  })
  const serviceCert = await mesh.issueServerCertificate()
  service = createServer({ cert: serviceCert.certPem, key: serviceCert.keyPem, ca: mesh.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) =>
    res.end(req.headers.authorization?.startsWith('Bearer ') ? 'with a token' : 'no token'),
  )
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve))
  serviceUrl = `https://127.0.0.1:${(service.address() as AddressInfo).port}`
})
afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()))
  service.closeAllConnections()
  await new Promise((resolve) => service.close(resolve))
  await issuer.close()
})

const clientWith = (extra: Partial<ClientOptions>): CallsignClient => {
  const client = createClient({
    issuer: issuer.issuer,
    clientId: FRONTEND_ID,
    auth: 'tls_client_auth',
    identity: { cert: frontend.certPem, key: frontend.keyPem, ca: mesh.certPem },
    services: { orders: { url: serviceUrl } },
    timeout: 3000,
    ...extra,
  })
  clients.push(client)
  return client
}

describe('issuerCa', () => {
  it('by default trusts identity.ca only: an authorization server of another CA is refused by TLS, no token', async () => {
    const before = issuer.tokenRequests.length
    const error = await clientWith({})
      .service('orders')
      .fetch('/orders')
      .catch((thrown: unknown) => thrown)
    expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'network' })
    expect(issuer.tokenRequests.length).toBe(before)
  })

  it('set to that CA: the token is had from the authorization server, and the service is still checked against identity.ca', async () => {
    const client = clientWith({ issuerCa: other.certPem })
    const response = await client.service('orders').fetch('/orders')
    expect(await response.text()).toBe('with a token')
    expect(issuer.tokenRequests.at(-1)).toMatchObject({ grantType: 'client_credentials', clientId: FRONTEND_ID, status: 200 })
    // The other CA is trusted for the authorization server only: a service with its certificate is refused.
    const impostorCert = await other.issueServerCertificate()
    const impostor = createServer({ cert: impostorCert.certPem, key: impostorCert.keyPem }, (req, res) => res.end('impostor'))
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve))
    try {
      const misrouted = clientWith({
        issuerCa: [other.certPem],
        services: { orders: { url: `https://127.0.0.1:${(impostor.address() as AddressInfo).port}` } },
      })
      const error = await misrouted
        .service('orders')
        .fetch('/orders')
        .catch((thrown: unknown) => thrown)
      expect(error).toMatchObject({ code: 'service_unavailable', reason: 'tls' })
    } finally {
      impostor.closeAllConnections()
      await new Promise((resolve) => impostor.close(resolve))
    }
  })

  it("'system' trusts Node's roots, not identity.ca: an authorization server of the mesh CA is then refused", async () => {
    const meshCert = await mesh.issueServerCertificate()
    const meshIssuer = await startTestIssuer({
      tls: { certPem: meshCert.certPem, keyPem: meshCert.keyPem, clientCa: mesh.certPem },
      tokenEndpoint: { clients: [{ clientId: FRONTEND_ID, auth: 'tls_client_auth' }] },
    })
    try {
      // The default (identity.ca) reaches it...
      const response = await clientWith({ issuer: meshIssuer.issuer }).service('orders').fetch('/orders')
      expect(await response.text()).toBe('with a token')
      // ...'system' does not: the mesh CA is not one of Node's roots.
      const error = await clientWith({ issuer: meshIssuer.issuer, issuerCa: 'system' })
        .service('orders')
        .fetch('/orders')
        .catch((thrown: unknown) => thrown)
      expect(error).toMatchObject({ code: 'authorization_server_unavailable', reason: 'network' })
      expect(meshIssuer.tokenRequests).toHaveLength(1)
    } finally {
      await meshIssuer.close()
    }
  })
})

/**
 * createClient against parts Callsign did not write: panva's oidc-provider as the authorization
 * server (https, an RFC 8705 mTLS endpoint alias, DPoP with a nonce required at the token
 * endpoint, token exchange registered as a custom grant) with each client authentication, calling
 * (a) a Callsign-protected Express service and (b) Auth0's express-oauth2-jwt-bearer with DPoP
 * required. Only the public `createClient` of the built package is used.
 */
import { createPrivateKey } from 'node:crypto'
import { Agent as HttpsAgent, createServer } from 'node:https'
import type { AuthContext } from '@callsign/core'
import express from 'express'
import { auth as jwtBearer } from 'express-oauth2-jwt-bearer'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient, type CallsignClient, type ClientEvent, type ClientOptions } from '@callsign/client'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { closer, listen } from '../../../test/support/adapters.js'
import { call } from '../../../test/support/client.js'
import { fetchTrusting, startHandlerApp, writeIdentityFiles, type HandlerApp, type IdentityFiles } from '../../../test/support/client-apps.js'
import { es256, RESOURCE, secretFor, startOidcProvider, TOKEN_EXCHANGE_GRANT, type RunningOidcProvider } from '../../../test/support/oidc-provider.js'

const ID = {
  tls: 'spiffe://example.org/ns/web/sa/frontend',
  jwt: 'spiffe://example.org/ns/batch/sa/signer',
  basic: 'spiffe://example.org/ns/batch/sa/basic',
} as const
const JWT_CLIENT = 'interop-signer'
/** The same workload for DPoP: oidc-provider refuses DPoP from a client registered for certificate-bound tokens. */
const TLS_DPOP_CLIENT = 'interop-tls-dpop'
const BASIC_CLIENT = 'interop-basic'
const ORDERS_ID = 'spiffe://example.org/ns/orders/sa/orders'
const GRANTS = ['client_credentials', TOKEN_EXCHANGE_GRANT]

let ca: TestCa
let provider: RunningOidcProvider
let trust: ReturnType<typeof fetchTrusting>
let callsignService: HandlerApp
let auth0Service: { url: string; close(): Promise<void> }
let jwtKey: Awaited<ReturnType<typeof es256>>
const certs = {} as Record<keyof typeof ID, IssuedCertificate>
const files = {} as Record<keyof typeof ID, IdentityFiles>
const clients: CallsignClient[] = []

beforeAll(async () => {
  ca = await createTestCa()
  const [providerCert, ordersServer, auth0Server, tls, jwt, basic] = await Promise.all([
    ca.issueServerCertificate(),
    ca.issueServerCertificate({ spiffeId: ORDERS_ID }),
    ca.issueServerCertificate({ spiffeId: ORDERS_ID }),
    ca.issueCertificate({ spiffeId: ID.tls }),
    ca.issueCertificate({ spiffeId: ID.jwt }),
    ca.issueCertificate({ spiffeId: ID.basic }),
  ])
  Object.assign(certs, { tls, jwt, basic })
  for (const name of Object.keys(ID) as (keyof typeof ID)[]) files[name] = await writeIdentityFiles(certs[name], ca.certPem)
  jwtKey = await es256('interop-signer-key')
  provider = await startOidcProvider({
    tls: { key: providerCert.keyPem, cert: providerCert.certPem, ca: ca.certPem },
    mtlsAlias: true,
    tokenExchange: true,
    dpopNonce: true,
    clients: [
      {
        client_id: ID.tls,
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: ID.tls,
        tls_client_certificate_bound_access_tokens: true,
        grant_types: GRANTS,
        scope: 'orders:read orders:write',
      },
      {
        client_id: TLS_DPOP_CLIENT,
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: ID.tls,
        grant_types: GRANTS,
        scope: 'orders:read',
      },
      {
        client_id: JWT_CLIENT,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [jwtKey.publicJwk] },
        grant_types: GRANTS,
        scope: 'orders:read',
      },
      { client_id: BASIC_CLIENT, client_secret: secretFor(BASIC_CLIENT), grant_types: GRANTS, scope: 'orders:read' },
    ],
  })
  trust = fetchTrusting(ca.certPem)
  callsignService = await startHandlerApp(
    'express',
    { key: ordersServer.keyPem, cert: ordersServer.certPem, ca: ca.certPem },
    () => ({
      issuers: { issuer: provider.issuer, audience: RESOURCE.orders },
      mtls: 'required',
      senderConstraint: 'required',
      clientIds: { [JWT_CLIENT]: ID.jwt, [BASIC_CLIENT]: ID.basic, [TLS_DPOP_CLIENT]: ID.tls },
      fetch: trust,
    }),
    async (auth: AuthContext) => ({ caller: auth.caller.id, binding: auth.binding, clientId: auth.claims?.client_id, cnf: auth.claims?.cnf }),
    { scopes: ['orders:read'] },
  )
  auth0Service = await startAuth0Service(auth0Server)
})
afterAll(async () => {
  await Promise.allSettled(clients.map((client) => client.close()))
  await Promise.allSettled([callsignService?.close(), auth0Service?.close()])
  expect(provider?.serverErrors).toEqual([])
  await provider?.close()
  await trust?.close()
  await Promise.all(Object.values(files).map((f) => f.remove()))
})

/** Auth0's express-oauth2-jwt-bearer, DPoP required, over https: a resource server Callsign did not write. */
async function startAuth0Service(cert: IssuedCertificate): Promise<{ url: string; close(): Promise<void> }> {
  const app = express()
  app.use(
    jwtBearer({
      issuerBaseURL: provider.issuer,
      audience: RESOURCE.billing,
      authRequired: true,
      agent: new HttpsAgent({ ca: ca.certPem }),
      dpop: { enabled: true, required: true },
    }),
  )
  app.get('/invoices', (req, res) => {
    // req.auth is typed by @callsign/express's augmentation; here it is express-oauth2-jwt-bearer's.
    const { sub, client_id: clientId, cnf, act } = (req as unknown as { auth?: { payload: Record<string, unknown> } }).auth?.payload ?? {}
    res.json({ sub, clientId, cnf, act })
  })
  const server = createServer({ key: cert.keyPem, cert: cert.certPem }, app)
  return { url: await listen(server), close: closer(server) }
}

type AuthName = keyof typeof ID

/** The client options of one client authentication. */
function clientAuth(name: AuthName, dpop: boolean): Pick<ClientOptions, 'clientId' | 'auth' | 'clientSecret' | 'privateKey'> {
  if (name === 'tls') return { clientId: dpop ? TLS_DPOP_CLIENT : ID.tls, auth: 'tls_client_auth' }
  if (name === 'basic') return { clientId: BASIC_CLIENT, auth: 'client_secret_basic', clientSecret: secretFor(BASIC_CLIENT) }
  const pem = createPrivateKey({ key: jwtKey.privateJwk as never, format: 'jwk' })
    .export({ type: 'pkcs8', format: 'pem' })
    .toString()
  return { clientId: JWT_CLIENT, auth: 'private_key_jwt', privateKey: pem }
}

function newClient(name: AuthName, dpop: boolean, events: ClientEvent[]): CallsignClient {
  const client = createClient({
    issuer: provider.issuer,
    ...clientAuth(name, dpop),
    identity: files[name].identity,
    dpop,
    services: {
      orders: { url: callsignService.url, resource: RESOURCE.orders, scopes: ['orders:read'], spiffeId: ORDERS_ID },
      billing: { url: auth0Service.url, resource: RESOURCE.billing, scopes: ['orders:read'], spiffeId: ORDERS_ID },
    },
    onEvent: (event) => events.push(event),
  })
  clients.push(client)
  return client
}

const CLIENT_IDS: Record<AuthName, string> = { tls: TLS_DPOP_CLIENT, jwt: JWT_CLIENT, basic: BASIC_CLIENT }

describe.each(['tls', 'jwt', 'basic'] as const)('oidc-provider, client authentication %s', (name) => {
  let client: CallsignClient
  const events: ClientEvent[] = []
  beforeAll(() => {
    client = newClient(name, true, events)
  })

  it('(a) a Callsign-protected service accepts the DPoP-bound token (nonce required at the token endpoint: one retry)', async () => {
    const res = await client.service('orders').fetch('/orders')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ caller: ID[name], binding: 'dpop', clientId: CLIENT_IDS[name], cnf: { jkt: expect.any(String) } })
    expect(events.filter((event) => event.type === 'retry')).toEqual([expect.objectContaining({ reason: 'use_dpop_nonce' })])
    expect(events.filter((event) => event.type === 'token_request')).toEqual([
      expect.objectContaining({ service: 'orders', grant: 'client_credentials', binding: 'dpop' }),
    ])
  })

  it('(b) express-oauth2-jwt-bearer with DPoP required accepts the DPoP-bound token and the proofs', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await client.service('billing').fetch('/invoices?page=1')
      expect(res.status, await res.clone().text()).toBe(200)
      expect(await res.json()).toMatchObject({ clientId: CLIENT_IDS[name], cnf: { jkt: expect.any(String) } })
    }
    const { authorization } = await client.service('billing').headers({ method: 'GET', url: '/invoices' })
    expect(authorization).toMatch(/^DPoP /)
    expect(decodeJwt(authorization.slice(5))).toMatchObject({ aud: RESOURCE.billing, iss: provider.issuer })
  })

  it('(b) express-oauth2-jwt-bearer refuses the same token without its proof', async () => {
    const { authorization } = await client.service('billing').headers({ method: 'GET', url: '/invoices' })
    const res = await trust(`${auth0Service.url}/invoices`, { headers: { authorization } })
    expect(res.status).toBe(400)
  })
})

describe('oidc-provider, tls_client_auth without DPoP', () => {
  it('(a) a certificate-bound token (cnf x5t#S256 of the workload certificate) accepted by Callsign', async () => {
    const events: ClientEvent[] = []
    const client = newClient('tls', false, events)
    const res = await client.service('orders').fetch('/orders')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ caller: ID.tls, binding: 'mtls', cnf: { 'x5t#S256': certs.tls.x5tS256 } })
    expect(events.filter((event) => event.type === 'token_request')).toEqual([expect.objectContaining({ binding: 'mtls' })])
  })

  it('(b) express-oauth2-jwt-bearer with DPoP required refuses it (its 400 and DPoP challenge resolve as a Response)', async () => {
    const client = newClient('tls', false, [])
    const res = await client.service('billing').fetch('/invoices')
    expect(res.status).toBe(400)
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP /)
  })
})

describe('oidc-provider token exchange (RFC 8693, its custom grant)', () => {
  it('a Callsign-verified auth context is exchanged; express-oauth2-jwt-bearer sees the user and the actor', async () => {
    const events: ClientEvent[] = []
    const client = newClient('tls', true, events)
    const frontendCert = await ca.issueServerCertificate({ spiffeId: ID.tls })
    const frontend = await startHandlerApp(
      'express',
      { key: frontendCert.keyPem, cert: frontendCert.certPem, ca: ca.certPem },
      () => ({ issuers: { issuer: provider.issuer, audience: RESOURCE.orders }, fetch: trust }),
      async (auth) => (await client.service('billing').fetch('/invoices', { onBehalfOf: auth })).json(),
    )
    try {
      // The "user" token: a JWT access token of oidc-provider for this frontend, as any of its clients gets one.
      const { access_token: subject } = await provider.clientCredentials(
        { clientId: BASIC_CLIENT, secret: secretFor(BASIC_CLIENT) },
        { resource: RESOURCE.orders, scope: 'orders:read' },
      )
      const res = await call(frontend.url, ca.certPem, { path: '/checkout', token: subject })
      expect(res.status, res.text).toBe(200)
      expect(res.body).toMatchObject({ sub: BASIC_CLIENT, clientId: TLS_DPOP_CLIENT, act: { sub: TLS_DPOP_CLIENT }, cnf: { jkt: expect.any(String) } })
      expect(events.filter((event) => event.type === 'token_request')).toEqual([
        expect.objectContaining({ grant: 'token_exchange', binding: 'dpop', service: 'billing' }),
      ])
      expect(JSON.stringify(events)).not.toContain(subject)
    } finally {
      await frontend.close()
    }
  })
})

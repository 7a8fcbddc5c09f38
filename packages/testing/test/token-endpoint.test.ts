// The test issuer's token endpoint, driven by a real OAuth client (oauth4webapi over undici).
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { AuthError, createCallsign, type AuthContext } from '@callsign/core'
import { decodeJwt, exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet, calculateJwkThumbprint, type CryptoKey } from 'jose'
import * as oauth from 'oauth4webapi'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createDpopKey,
  createDpopProof,
  createTestCa,
  startTestIssuer,
  type IssuedCertificate,
  type TestCa,
  type TestIssuer,
  type TestIssuerOptions,
  type TokenEndpointOptions,
} from '../src/index.js'

const FRONTEND = 'spiffe://example.org/ns/web/sa/frontend'
const ORDERS = 'spiffe://example.org/ns/orders/sa/orders'
const ORDERS_URL = 'https://orders.example.org'
const PAYMENTS_URL = 'https://payments.example.org'
const SECRET = 'top secret: +&%'
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'

let ca: TestCa
let serverCert: IssuedCertificate
let frontendCert: IssuedCertificate
let ordersCert: IssuedCertificate
let caFlaggedCert: IssuedCertificate
let signerKey: CryptoKey
let issuer: TestIssuer
let as: oauth.AuthorizationServer
const agents: Agent[] = []

function clients(): TokenEndpointOptions['clients'] {
  return [
    { clientId: 'frontend', auth: 'tls_client_auth', spiffeId: FRONTEND, scopes: ['orders:read', 'orders:write'] },
    { clientId: ORDERS, auth: 'tls_client_auth' },
    { clientId: 'batch', auth: 'client_secret_basic', clientSecret: SECRET },
    { clientId: 'limited', auth: 'client_secret_basic', clientSecret: SECRET, scopes: ['orders:read'], resources: [ORDERS_URL] },
  ]
}

async function start(tokenEndpoint: Partial<TokenEndpointOptions> = {}, extra: TestIssuerOptions = {}): Promise<TestIssuer> {
  return startTestIssuer({
    tls: { certPem: serverCert.certPem, keyPem: serverCert.keyPem, clientCa: ca.certPem },
    tokenEndpoint: { clients: [...clients(), signerClient], ...tokenEndpoint },
    ...extra,
  })
}

let signerClient: TokenEndpointOptions['clients'][number]

/** `fetch` over undici with the test CA (and a client certificate), answering a global `Response` as oauth4webapi wants. */
function fetchWith(cert?: IssuedCertificate): (url: string, options: oauth.CustomFetchOptions<string, unknown>) => Promise<Response> {
  const agent = new Agent({ connect: { ca: ca.certPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) } })
  agents.push(agent)
  return async (url, options) => {
    const res = await undiciFetch(url, { ...(options as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1])
    return new Response(await res.arrayBuffer(), { status: res.status, headers: new Headers([...res.headers]) })
  }
}

interface Call {
  clientId: string
  auth: oauth.ClientAuth
  cert?: IssuedCertificate
  dpop?: oauth.DPoPHandle
  grant?: string
  parameters: Record<string, string | string[]>
  server?: oauth.AuthorizationServer
}

/** One token request as a real client makes it; the raw response and the processed one (or the error). */
async function call(c: Call): Promise<{ response: Response; body?: oauth.TokenEndpointResponse; error?: unknown }> {
  const server = c.server ?? as
  const client: oauth.Client = { client_id: c.clientId, use_mtls_endpoint_aliases: c.cert !== undefined }
  const parameters = new URLSearchParams()
  for (const [name, value] of Object.entries(c.parameters)) for (const v of [value].flat()) parameters.append(name, v)
  const options = { [oauth.customFetch]: fetchWith(c.cert), ...(c.dpop ? { DPoP: c.dpop } : {}) }
  const response =
    c.grant === undefined
      ? await oauth.clientCredentialsGrantRequest(server, client, c.auth, parameters, options)
      : await oauth.genericTokenEndpointRequest(server, client, c.auth, c.grant, parameters, options)
  try {
    const body =
      c.grant === undefined
        ? await oauth.processClientCredentialsResponse(server, client, response.clone())
        : await oauth.processGenericTokenEndpointResponse(server, client, response.clone())
    return { response, body }
  } catch (error) {
    return { response, error }
  }
}

async function discover(target: TestIssuer): Promise<oauth.AuthorizationServer> {
  const url = new URL(target.issuer)
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', [oauth.customFetch]: fetchWith() }))
}

const verify = async (token: string, target = issuer) =>
  (await jwtVerify(token, createLocalJWKSet(target.publicJwks()), { issuer: target.issuer, typ: 'at+jwt' })).payload

const basic = (secret = SECRET) => oauth.ClientSecretBasic(secret)
const errorOf = (error: unknown) => (error instanceof oauth.ResponseBodyError ? { status: error.status, error: error.error } : error)

beforeAll(async () => {
  ca = await createTestCa()
  serverCert = await ca.issueServerCertificate()
  frontendCert = await ca.issueCertificate({ spiffeId: FRONTEND })
  ordersCert = await ca.issueCertificate({ spiffeId: ORDERS })
  caFlaggedCert = await ca.issueCertificate({ spiffeId: FRONTEND, isCa: true })
  const pair = await generateKeyPair('ES256')
  signerKey = pair.privateKey
  signerClient = { clientId: 'signer', auth: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), alg: 'ES256', kid: 'k1' }] } }
  issuer = await start()
  as = await discover(issuer)
})

afterAll(async () => {
  await issuer?.close()
  await Promise.all(agents.map((agent) => agent.close()))
})

describe('token endpoint metadata', () => {
  it('publishes the endpoint, grants, client authentication methods, DPoP algorithms and the mTLS alias', () => {
    expect(as).toMatchObject({
      issuer: issuer.issuer,
      token_endpoint: `${issuer.issuer}/token`,
      grant_types_supported: ['client_credentials', EXCHANGE],
      token_endpoint_auth_methods_supported: ['tls_client_auth', 'private_key_jwt', 'client_secret_basic'],
      tls_client_certificate_bound_access_tokens: true,
      mtls_endpoint_aliases: { token_endpoint: `${issuer.issuer}/token` },
    })
    expect(as.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256', 'EdDSA', 'PS256']))
    expect(issuer.tokenEndpoint).toBe(`${issuer.issuer}/token`)
  })

  it('leaves token exchange out of the grants when exchange is off, and the mTLS members without tls.clientCa', async () => {
    const plain = await startTestIssuer({
      tokenEndpoint: { clients: [{ clientId: 'batch', auth: 'client_secret_basic', clientSecret: SECRET }], exchange: false },
    })
    try {
      const res = await fetch(`${plain.origin}/.well-known/oauth-authorization-server`)
      const metadata = (await res.json()) as Record<string, unknown>
      expect(metadata['grant_types_supported']).toEqual(['client_credentials'])
      expect(metadata['token_endpoint_auth_methods_supported']).toEqual(['private_key_jwt', 'client_secret_basic'])
      expect(metadata['tls_client_certificate_bound_access_tokens']).toBe(false)
      expect(metadata).not.toHaveProperty('mtls_endpoint_aliases')
    } finally {
      await plain.close()
    }
  })
})

describe('client credentials (RFC 6749 §4.4) with each client authentication', () => {
  it('client_secret_basic: a bearer token for the resource (aud) and scopes', async () => {
    const { body, response } = await call({ clientId: 'batch', auth: basic(), parameters: { resource: ORDERS_URL, scope: 'orders:read' } })
    expect(response.headers.get('cache-control')).toBe('no-store')
    expect(body).toMatchObject({ token_type: 'bearer', expires_in: 300, scope: 'orders:read' })
    const claims = await verify(body!.access_token)
    expect(claims).toMatchObject({ iss: issuer.issuer, sub: 'batch', client_id: 'batch', aud: ORDERS_URL, scope: 'orders:read' })
    expect(claims.exp! - claims.iat!).toBe(300)
    expect(claims).not.toHaveProperty('cnf')
  })

  it('private_key_jwt (RFC 7523): an assertion signed by a registered key', async () => {
    const { body } = await call({ clientId: 'signer', auth: oauth.PrivateKeyJwt({ key: signerKey, kid: 'k1' }), parameters: { resource: ORDERS_URL } })
    expect(await verify(body!.access_token)).toMatchObject({ sub: 'signer', client_id: 'signer', aud: ORDERS_URL })
  })

  it('tls_client_auth (RFC 8705 §2): the workload certificate; the token is certificate-bound (cnf x5t#S256) and its sub is the SPIFFE ID', async () => {
    const { body } = await call({ clientId: 'frontend', auth: oauth.TlsClientAuth(), cert: frontendCert, parameters: { resource: ORDERS_URL } })
    expect(body).toMatchObject({ token_type: 'bearer', scope: 'orders:read orders:write' })
    const claims = await verify(body!.access_token)
    expect(claims).toMatchObject({ sub: FRONTEND, client_id: 'frontend', cnf: { 'x5t#S256': frontendCert.x5tS256 } })
  })

  it('binds the token of a client_secret_basic client that presents a verified certificate to that certificate', async () => {
    const { body } = await call({ clientId: 'batch', auth: basic(), cert: frontendCert, parameters: { resource: ORDERS_URL } })
    expect((await verify(body!.access_token))['cnf']).toEqual({ 'x5t#S256': frontendCert.x5tS256 })
  })

  it('gives several resources as an aud array', async () => {
    const { body } = await call({ clientId: 'batch', auth: basic(), parameters: { resource: [ORDERS_URL, PAYMENTS_URL] } })
    expect((await verify(body!.access_token))['aud']).toEqual([ORDERS_URL, PAYMENTS_URL])
  })

  it('records token requests with their grant type and client', async () => {
    issuer.clearRequests()
    await call({ clientId: 'batch', auth: basic(), parameters: {} })
    await call({ clientId: 'batch', auth: basic('wrong'), parameters: {} })
    expect(issuer.tokenRequests).toEqual([
      { grantType: 'client_credentials', clientId: 'batch', status: 200 },
      { grantType: 'client_credentials', clientId: undefined, status: 401, error: 'invalid_client' },
    ])
    expect(issuer.requests).toEqual([
      { method: 'POST', path: '/token' },
      { method: 'POST', path: '/token' },
    ])
  })
})

describe('client authentication refusals', () => {
  it('a wrong secret is a 401 invalid_client with a Basic challenge', async () => {
    const { response, error } = await call({ clientId: 'batch', auth: basic('wrong'), parameters: {} })
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm="[^"]+", error="invalid_client"/)
    expect(await response.json()).toMatchObject({ error: 'invalid_client' })
    expect(error).toBeInstanceOf(oauth.WWWAuthenticateChallengeError)
  })

  it.each([
    ['a certificate with another SAN URI', () => ordersCert, 'frontend'],
    ['a CA-flagged certificate', () => caFlaggedCert, 'frontend'],
    ['no certificate', () => undefined, 'frontend'],
    ['a client registered for another method', () => frontendCert, 'batch'],
    ['an unknown client', () => frontendCert, 'nobody'],
  ])('tls_client_auth with %s is invalid_client', async (_, cert, clientId) => {
    const certificate = cert()
    const { error } = await call({ clientId, auth: oauth.TlsClientAuth(), ...(certificate ? { cert: certificate } : {}), parameters: {} })
    expect(errorOf(error)).toEqual({ status: 401, error: 'invalid_client' })
  })

  it('tls_client_auth with a certificate of another CA is invalid_client', async () => {
    const other = await createTestCa()
    const foreign = await other.issueCertificate({ spiffeId: FRONTEND })
    const { error } = await call({ clientId: 'frontend', auth: oauth.TlsClientAuth(), cert: foreign, parameters: {} })
    expect(errorOf(error)).toEqual({ status: 401, error: 'invalid_client' })
  })

  it('private_key_jwt refuses a replayed assertion, a foreign key and a wrong audience', async () => {
    const fixed = (modify: (payload: Record<string, unknown>) => void) =>
      oauth.PrivateKeyJwt({ key: signerKey, kid: 'k1' }, { [oauth.modifyAssertion]: (_h: unknown, payload: Record<string, unknown>) => modify(payload) })
    const replayed = fixed((payload) => (payload['jti'] = 'the-same-jti'))
    expect((await call({ clientId: 'signer', auth: replayed, parameters: {} })).body).toBeDefined()
    expect(errorOf((await call({ clientId: 'signer', auth: replayed, parameters: {} })).error)).toEqual({ status: 401, error: 'invalid_client' })
    const stranger = await generateKeyPair('ES256')
    const foreign = oauth.PrivateKeyJwt({ key: stranger.privateKey, kid: 'k1' })
    expect(errorOf((await call({ clientId: 'signer', auth: foreign, parameters: {} })).error)).toEqual({ status: 401, error: 'invalid_client' })
    const elsewhere = fixed((payload) => (payload['aud'] = 'https://elsewhere.example'))
    expect(errorOf((await call({ clientId: 'signer', auth: elsewhere, parameters: {} })).error)).toEqual({ status: 401, error: 'invalid_client' })
  })
})

describe('request refusals (RFC 6749 §5.2, RFC 8707)', () => {
  it.each([
    ['a scope the client may not have', 'invalid_scope', 'limited', { scope: 'orders:write' }],
    ['a malformed scope', 'invalid_scope', 'batch', { scope: 'a\\b' }],
    ['a resource the client may not ask for', 'invalid_target', 'limited', { resource: PAYMENTS_URL }],
    ['a relative resource', 'invalid_target', 'batch', { resource: '/orders' }],
    ['a resource with a fragment', 'invalid_target', 'batch', { resource: `${ORDERS_URL}#x` }],
    ['an audience the client may not ask for (RFC 8693)', 'invalid_target', 'limited', { resource: ORDERS_URL, audience: 'payments-api' }],
    ['an empty audience', 'invalid_target', 'batch', { audience: '' }],
    ['a repeated parameter', 'invalid_request', 'batch', { scope: ['a', 'b'] }],
  ])('%s is a 400 %s', async (_, code, clientId, parameters) => {
    const { response, error } = await call({ clientId, auth: basic(), parameters })
    expect(errorOf(error)).toEqual({ status: 400, error: code })
    expect(response.headers.get('cache-control')).toBe('no-store')
  })

  it('an unknown grant type is unsupported_grant_type', async () => {
    const { error } = await call({ clientId: 'batch', auth: basic(), grant: 'password', parameters: { username: 'a', password: 'b' } })
    expect(errorOf(error)).toEqual({ status: 400, error: 'unsupported_grant_type' })
  })

  it('refuses a GET, a body that is not a form and an oversized body with a 4xx', async () => {
    const send = fetchWith()
    const get = await send(issuer.tokenEndpoint, { method: 'GET' } as never)
    expect(get.status).toBe(405)
    const json = await send(issuer.tokenEndpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' } as never)
    expect([json.status, ((await json.json()) as { error: string }).error]).toEqual([400, 'invalid_request'])
    const big = await send(issuer.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&x=${'a'.repeat(100_000)}`,
    } as never)
    expect([big.status, ((await big.json()) as { error: string }).error]).toEqual([400, 'invalid_request'])
  })
})

describe('DPoP at the token endpoint (RFC 9449 §5)', () => {
  it('a proof makes a DPoP token bound to its key (cnf.jkt), also over mTLS', async () => {
    const key = await generateKeyPair('ES256', { extractable: true })
    const jkt = await calculateJwkThumbprint(await exportJWK(key.publicKey))
    const dpop = oauth.DPoP({}, key)
    const { body } = await call({ clientId: 'frontend', auth: oauth.TlsClientAuth(), cert: frontendCert, dpop, parameters: { resource: ORDERS_URL } })
    expect(body).toMatchObject({ token_type: 'dpop' })
    expect((await verify(body!.access_token))['cnf']).toEqual({ jkt })
  })

  it.each([
    ['another htu', { htu: 'https://127.0.0.1:1/token' }],
    ['another htm', { htm: 'GET' }],
    ['a private key in jwk', { includePrivateKey: true }],
    ['typ JWT', { typ: 'JWT' }],
    ['an old iat', { iat: Math.floor(Date.now() / 1000) - 600 }],
    ['a broken signature', { tamper: true }],
    ['alg none', { unsigned: true }],
  ])('a proof with %s is a 400 invalid_dpop_proof', async (_, defect) => {
    const key = await createDpopKey()
    const proof = await createDpopProof(key, { method: 'POST', url: issuer.tokenEndpoint, ...defect })
    const res = await postForm({ grant_type: 'client_credentials' }, { dpop: proof, authorization: basicHeader() })
    expect([res.status, res.body['error']]).toEqual([400, 'invalid_dpop_proof'])
  })

  it('a replayed proof is refused', async () => {
    const proof = await createDpopProof(await createDpopKey(), { method: 'POST', url: issuer.tokenEndpoint })
    expect((await postForm({ grant_type: 'client_credentials' }, { dpop: proof, authorization: basicHeader() })).status).toBe(200)
    const again = await postForm({ grant_type: 'client_credentials' }, { dpop: proof, authorization: basicHeader() })
    expect([again.status, again.body['error']]).toEqual([400, 'invalid_dpop_proof'])
  })

  it('requireDpopNonce: use_dpop_nonce with a DPoP-Nonce header, then one retry with the nonce succeeds', async () => {
    const strict = await start({ requireDpopNonce: true })
    try {
      const server = await discover(strict)
      const dpop = oauth.DPoP({}, await generateKeyPair('ES256', { extractable: true }))
      const first = await call({ server, clientId: 'batch', auth: basic(), dpop, parameters: {} })
      expect(first.response.status).toBe(400)
      expect(first.response.headers.get('dpop-nonce')).toBeTruthy()
      expect(oauth.isDPoPNonceError(first.error)).toBe(true)
      const retry = await call({ server, clientId: 'batch', auth: basic(), dpop, parameters: {} })
      expect(retry.body).toMatchObject({ token_type: 'dpop' })

      strict.rotateDpopNonce()
      expect(oauth.isDPoPNonceError((await call({ server, clientId: 'batch', auth: basic(), dpop, parameters: {} })).error)).toBe(true)
      expect((await call({ server, clientId: 'batch', auth: basic(), dpop, parameters: {} })).body).toBeDefined()
      expect(strict.tokenRequests.map((r) => r.error ?? r.status)).toEqual(['use_dpop_nonce', 200, 'use_dpop_nonce', 200])
    } finally {
      await strict.close()
    }
  })
})

describe('token exchange (RFC 8693)', () => {
  it('exchanges a user token: subject kept, act chain extended with the client, scopes narrowed, exp capped', async () => {
    const subject = await issuer.signAccessToken(
      { sub: 'user:alice', scope: 'orders:read payments:pay', act: { sub: FRONTEND } },
      { audience: ORDERS_URL, expiresInSeconds: 30 },
    )
    const { body } = await call({
      clientId: ORDERS,
      auth: oauth.TlsClientAuth(),
      cert: ordersCert,
      grant: EXCHANGE,
      parameters: { subject_token: subject, subject_token_type: ACCESS_TOKEN, resource: PAYMENTS_URL, scope: 'payments:pay orders:write' },
    })
    expect(body).toMatchObject({ issued_token_type: ACCESS_TOKEN, token_type: 'bearer', scope: 'payments:pay' })
    expect(body!.expires_in).toBeLessThanOrEqual(30)
    const claims = await verify(body!.access_token)
    expect(claims).toMatchObject({
      sub: 'user:alice',
      aud: PAYMENTS_URL,
      client_id: ORDERS,
      scope: 'payments:pay',
      act: { sub: ORDERS, act: { sub: FRONTEND } },
      cnf: { 'x5t#S256': ordersCert.x5tS256 },
    })
    expect(claims.exp).toBeLessThanOrEqual(decodeJwt(subject).exp!)
  })

  it('exchanges a token the endpoint issued, with no scope asked (the subject token scopes, as the client may have them)', async () => {
    const first = await call({
      clientId: 'frontend',
      auth: oauth.TlsClientAuth(),
      cert: frontendCert,
      parameters: { resource: ORDERS_URL, scope: 'orders:read' },
    })
    const { body } = await call({
      clientId: 'batch',
      auth: basic(),
      grant: EXCHANGE,
      parameters: { subject_token: first.body!.access_token, subject_token_type: ACCESS_TOKEN, resource: PAYMENTS_URL },
    })
    expect(await verify(body!.access_token)).toMatchObject({ sub: FRONTEND, scope: 'orders:read', act: { sub: 'batch' } })
  })

  it.each([
    ['an expired subject token', async () => issuer.signAccessToken({ sub: 'alice', scope: 'a' }, { expiresInSeconds: -10 }), {}, 'invalid_grant'],
    ['a subject token of another issuer', async () => foreignToken(), {}, 'invalid_grant'],
    ['a tampered subject token', async () => (await issuer.signAccessToken({ sub: 'alice', scope: 'a' })).slice(0, -3) + 'AAA', {}, 'invalid_grant'],
    ['a scope the subject does not hold', async () => issuer.signAccessToken({ sub: 'alice', scope: 'a' }), { scope: 'b' }, 'invalid_scope'],
    [
      'another subject_token_type',
      async () => issuer.signAccessToken({ sub: 'alice' }),
      { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' },
      'invalid_request',
    ],
    ['a subject that names another actor in may_act', async () => issuer.signAccessToken({ sub: 'alice', may_act: { sub: 'x' } }), {}, 'invalid_grant'],
  ] as const)('%s is refused', async (_, token, parameters, code) => {
    const { error } = await call({
      clientId: 'batch',
      auth: basic(),
      grant: EXCHANGE,
      parameters: { subject_token: await token(), subject_token_type: ACCESS_TOKEN, ...parameters },
    })
    expect(errorOf(error)).toEqual({ status: 400, error: code })
  })

  it('is unsupported_grant_type when exchange is off', async () => {
    const closed = await start({ exchange: false })
    try {
      const subject = await closed.signAccessToken({ sub: 'alice' })
      const { error } = await call({
        server: await discover(closed),
        clientId: 'batch',
        auth: basic(),
        grant: EXCHANGE,
        parameters: { subject_token: subject, subject_token_type: ACCESS_TOKEN },
      })
      expect(errorOf(error)).toEqual({ status: 400, error: 'unsupported_grant_type' })
    } finally {
      await closed.close()
    }
  })
})

describe('outages apply to the token endpoint', () => {
  it('down: 503; garbage: not JSON; hang: no answer', async () => {
    const flaky = await start()
    try {
      const server = await discover(flaky)
      flaky.setOutage('down')
      expect((await call({ server, clientId: 'batch', auth: basic(), parameters: {} })).response.status).toBe(503)
      flaky.setOutage('garbage')
      const garbage = await call({ server, clientId: 'batch', auth: basic(), parameters: {} })
      expect(garbage.error).toBeInstanceOf(oauth.OperationProcessingError)
      expect((garbage.error as oauth.OperationProcessingError).code).toBe(oauth.PARSE_ERROR)
      flaky.setOutage('hang')
      const client: oauth.Client = { client_id: 'batch' }
      const hung = oauth.clientCredentialsGrantRequest(server, client, basic(), {}, { [oauth.customFetch]: fetchWith(), signal: AbortSignal.timeout(300) })
      await expect(hung).rejects.toThrow()
      flaky.setOutage('none')
      expect((await call({ server, clientId: 'batch', auth: basic(), parameters: {} })).body).toBeDefined()
    } finally {
      await flaky.close()
    }
  })
})

describe('tokens from the endpoint pass a real Callsign guard', () => {
  let service: Server
  let serviceUrl: string

  beforeAll(async () => {
    const guard = createCallsign({
      issuers: { issuer: issuer.issuer, audience: ORDERS_URL, jwks: issuer.publicJwks() },
      mtls: { mode: 'optional' },
      dpop: { origin: ORDERS_URL },
    })
    service = createServer({ cert: serverCert.certPem, key: serverCert.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false }, (req, res) => {
      guard.authenticate(req).then(
        (auth: AuthContext | undefined) => res.writeHead(200).end(JSON.stringify({ caller: auth?.caller.id, binding: auth?.binding })),
        (error: unknown) => res.writeHead(error instanceof AuthError ? error.status : 500).end(JSON.stringify({ code: (error as AuthError).code })),
      )
    })
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve))
    serviceUrl = `https://127.0.0.1:${(service.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    await new Promise<void>((resolve) => {
      service.close(() => resolve())
      service.closeAllConnections()
    })
  })

  async function callService(headers: Record<string, string>, cert?: IssuedCertificate): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetchWith(cert)(`${serviceUrl}/orders`, { method: 'GET', headers } as never)
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  it('a DPoP-bound token with a proof', async () => {
    const key = await createDpopKey()
    const keyPair = { privateKey: key.privateKey, publicKey: key.publicKey }
    const { body } = await call({ clientId: 'batch', auth: basic(), dpop: oauth.DPoP({}, keyPair), parameters: { resource: ORDERS_URL } })
    const token = body!.access_token
    const proof = await createDpopProof(key, { method: 'GET', url: `${ORDERS_URL}/orders`, accessToken: token })
    expect(await callService({ authorization: `DPoP ${token}`, dpop: proof })).toMatchObject({ status: 200, body: { binding: 'dpop' } })
    // The same token without its proof is refused.
    expect((await callService({ authorization: `Bearer ${token}` })).status).toBe(401)
  })

  it('a certificate-bound token over mTLS with its certificate', async () => {
    const { body } = await call({ clientId: 'frontend', auth: oauth.TlsClientAuth(), cert: frontendCert, parameters: { resource: ORDERS_URL } })
    const token = body!.access_token
    expect(await callService({ authorization: `Bearer ${token}` }, frontendCert)).toMatchObject({ status: 200, body: { caller: FRONTEND, binding: 'mtls' } })
    // With another certificate it is refused.
    expect((await callService({ authorization: `Bearer ${token}` }, ordersCert)).status).toBe(401)
  })
})

describe('startTestIssuer: tokenEndpoint option checks', () => {
  it.each([
    ['an unknown key', { clients: [], ttl: 5 }, /unknown option "ttl"/],
    ['clients not an array', { clients: {} }, /"tokenEndpoint.clients" must be an array/],
    ['a bad accessTokenTtl', { clients: [], accessTokenTtl: 0 }, /"tokenEndpoint.accessTokenTtl" must be a positive integer/],
    ['a non-boolean requireDpopNonce', { clients: [], requireDpopNonce: 'yes' }, /"tokenEndpoint.requireDpopNonce" must be a boolean/],
    ['an unknown auth', { clients: [{ clientId: 'a', auth: 'none' }] }, /"tokenEndpoint.clients\[0\].auth" must be one of/],
    ['a basic client without a secret', { clients: [{ clientId: 'a', auth: 'client_secret_basic' }] }, /"tokenEndpoint.clients\[0\].clientSecret"/],
    ['a tls client without tls.clientCa', { clients: [{ clientId: 'a', auth: 'tls_client_auth' }] }, /needs the "tls.clientCa" option/],
    [
      'a private key in jwks',
      { clients: [{ clientId: 'a', auth: 'private_key_jwt', jwks: { keys: [{ kty: 'oct', k: 'AA', alg: 'HS256' }] } }] },
      /must be a public JWK/,
    ],
    [
      'a duplicate client',
      {
        clients: [
          { clientId: 'a', auth: 'client_secret_basic', clientSecret: 's' },
          { clientId: 'a', auth: 'client_secret_basic', clientSecret: 's' },
        ],
      },
      /registered twice/,
    ],
    ['a misspelled client key', { clients: [{ clientId: 'a', auth: 'client_secret_basic', secret: 's' }] }, /unknown option "secret"/],
  ])('refuses %s', async (_, tokenEndpoint, message) => {
    await expect(startTestIssuer({ tokenEndpoint: tokenEndpoint as never })).rejects.toThrow(message)
  })

  it('takes an IssuedCertificate as tls, and refuses an unknown tls key', async () => {
    const whole = await startTestIssuer({ tls: { ...serverCert, clientCa: ca.certPem } })
    await whole.close()
    await expect(startTestIssuer({ tls: { certPem: serverCert.certPem, keyPem: serverCert.keyPem, clientCA: ca.certPem } as never })).rejects.toThrow(
      /unknown option "clientCA"/,
    )
  })
})

/** A token signed by another issuer (its own keys). */
async function foreignToken(): Promise<string> {
  const other = await startTestIssuer()
  try {
    return await other.signAccessToken({ sub: 'alice', iss: issuer.issuer })
  } finally {
    await other.close()
  }
}

function basicHeader(): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${encode('batch')}:${encode(SECRET)}`).toString('base64')}`
}

/** A raw form POST to the token endpoint (for requests a well-behaved client never makes). */
async function postForm(form: Record<string, string>, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetchWith()(issuer.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  } as never)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

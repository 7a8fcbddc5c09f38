/**
 * The call side against real Callsign-protected HTTPS services (Express, Fastify, Koa) that
 * require mTLS callers and DPoP- or certificate-bound tokens: tokens signed by the test issuer
 * with the right `cnf`, the server's SPIFFE ID checked, nonces, retries, the three transports,
 * a stolen token, a rotated certificate.
 */
import { once } from 'node:events'
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { inspect } from 'node:util'
import { Agent, request as undiciRequest } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, DecisionEvent } from '@callsign/core'
import {
  ClientError,
  createConnections,
  createServiceClient,
  resolveServices,
  ServerIdentityError,
  ServiceRefusedError,
  ServiceUnavailableError,
  type ClientEvent,
  type Connections,
  type DpopKey,
  type IdentitySource,
  type IssuedToken,
  type ServiceClient,
  type SubjectToken,
  type TokenRequest,
  type TokenSource,
} from '@callsign/client'
import { createDpopKey, createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../../../test/support/adapters.js'

const AUDIENCE = 'https://orders.example.org'
const ORDERS_ID = 'spiffe://example.org/ns/orders/sa/orders'
const IMPOSTOR_ID = 'spiffe://example.org/ns/orders-evil/sa/orders'
const FRONTEND_ID = 'spiffe://example.org/ns/web/sa/frontend'
const NONCE_SECRET = 'client-call-side-test-nonce-secret-0123456789'

let ca: TestCa
let issuer: TestIssuer
let ordersServer: IssuedCertificate
let impostorServer: IssuedCertificate
let frontend: IssuedCertificate
let frontendRotated: IssuedCertificate
let stranger: IssuedCertificate
let dpopKey: DpopKey
const closers: Array<() => Promise<void>> = []

beforeAll(async () => {
  ca = await createTestCa()
  ;[issuer, ordersServer, impostorServer, frontend, frontendRotated, stranger] = await Promise.all([
    startTestIssuer(),
    ca.issueServerCertificate({ spiffeId: ORDERS_ID }),
    ca.issueServerCertificate({ spiffeId: IMPOSTOR_ID }),
    ca.issueCertificate({ spiffeId: FRONTEND_ID }),
    ca.issueCertificate({ spiffeId: FRONTEND_ID }),
    ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/other/sa/stranger' }),
  ])
  const key = await createDpopKey('ES256')
  dpopKey = {
    keyPair: { privateKey: key.privateKey, publicKey: key.publicKey },
    alg: key.alg,
    publicJwk: key.publicJwk as Record<string, string>,
    thumbprint: key.jkt,
  }
  closers.push(() => issuer.close())
})
afterAll(async () => {
  await Promise.allSettled(
    closers
      .splice(0)
      .reverse()
      .map((close) => close()),
  )
})

/** A workload identity that rotates when told (as core's `ClientIdentity` does when its files change). */
function rotatingIdentity(first: IssuedCertificate): IdentitySource & { rotate(next: IssuedCertificate): void; readonly certificate: IssuedCertificate } {
  let current = first
  let generation = 1
  return {
    get certificate() {
      return current
    },
    rotate(next) {
      current = next
      generation++
    },
    current: async () => ({ cert: current.certPem, key: current.keyPem, ca: ca.certPem, generation }),
  }
}

/**
 * A real token source over the test issuer: signs tokens bound to the DPoP key or to the current
 * certificate; caches one per key until invalidated; `stale` makes the next token an expired one.
 */
function issuerTokens(binding: 'dpop' | 'mtls', identity: { readonly certificate: IssuedCertificate }) {
  const cache = new Map<string, IssuedToken>()
  const source = {
    signed: [] as TokenRequest[],
    invalidated: 0,
    staleNext: false,
    async get(request: TokenRequest): Promise<IssuedToken> {
      const thumbprint = identity.certificate.x5tS256
      const key = JSON.stringify([request.resource, request.scopes, request.subject?.value, binding === 'mtls' ? thumbprint : ''])
      const cached = cache.get(key)
      if (cached) return cached
      source.signed.push(request)
      const now = Math.floor(Date.now() / 1000)
      const times = source.staleNext ? { iat: now - 600, exp: now - 300 } : {}
      source.staleNext = false
      const claims = request.subject
        ? { sub: 'alice', client_id: FRONTEND_ID, act: { sub: FRONTEND_ID }, scope: request.scopes.join(' ') }
        : { sub: FRONTEND_ID, client_id: FRONTEND_ID, scope: request.scopes.join(' ') }
      const value = await issuer.signAccessToken(
        { ...claims, ...times },
        { audience: request.resource, ...(binding === 'dpop' ? { dpopJkt: dpopKey.thumbprint } : { x5tS256: thumbprint }) },
      )
      const token: IssuedToken = { value, scheme: binding === 'dpop' ? 'DPoP' : 'Bearer', expiresAt: (now + 300) * 1000 }
      cache.set(key, token)
      return token
    },
    invalidate(request: TokenRequest, token: IssuedToken) {
      source.invalidated++
      for (const [key, cached] of cache) if (cached.value === token.value) cache.delete(key)
    },
    close: async () => {},
  }
  return source satisfies TokenSource
}

/** What a test's subject looks like: a Callsign auth context, with the token it presented when there is one. */
const subjectOf = (value: unknown): SubjectToken | undefined => {
  const token = (value as { presented?: string } | undefined)?.presented
  return typeof token === 'string' ? { value: token, expiresAt: undefined } : undefined
}

interface Caller {
  client: ServiceClient
  connections: Connections
  identity: ReturnType<typeof rotatingIdentity>
  tokens: ReturnType<typeof issuerTokens>
  events: ClientEvent[]
}

/** A client of `app` (resource {@link AUDIENCE}), bound as `binding`, presenting `frontend`. */
function callerOf(app: Pick<RunningApp, 'url'>, binding: 'dpop' | 'mtls', service: Record<string, unknown> = {}): Caller {
  const identity = rotatingIdentity(frontend)
  const services = resolveServices({ orders: { url: app.url, resource: AUDIENCE, scopes: ['orders:read'], ...service } })
  const connections = createConnections({ identity, services: services.values() })
  closers.push(() => connections.close())
  const tokens = issuerTokens(binding, identity)
  const events: ClientEvent[] = []
  const client = createServiceClient({
    name: 'orders',
    service: services.get('orders')!,
    tokens,
    dpop: binding === 'dpop' ? dpopKey : undefined,
    connections,
    emit: (event) => events.push(event),
    subjectOf,
  })
  return { client, connections, identity, tokens, events }
}

/** A service with `options`, served with `cert`, that records its decisions. */
async function startService(
  adapter: (typeof adapters)[number],
  options: Partial<CallsignOptions> = {},
  cert: IssuedCertificate = ordersServer,
): Promise<RunningApp & { decisions: DecisionEvent[] }> {
  const decisions: DecisionEvent[] = []
  const app = await adapter.start(
    {
      issuers: { issuer: issuer.issuer, audience: AUDIENCE },
      mtls: 'required',
      senderConstraint: 'required',
      logger: { warn() {} },
      onDecision: (event) => decisions.push(event),
      ...options,
    } as CallsignOptions,
    { key: cert.keyPem, cert: cert.certPem, ca: ca.certPem },
  )
  closers.push(() => app.close())
  return Object.assign(app, { decisions })
}

const retries = (events: ClientEvent[]): Array<string | undefined> => events.filter((event) => event.type === 'retry').map((event) => event.reason)

/** A plain node:https call presenting `cert` with `headers`. */
function httpsCall(url: string, cert: IssuedCertificate, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, cert: cert.certPem, key: cert.keyPem, ca: ca.certPem, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** A WHATWG Response (undici's class, which the client returns as is): what fetch code reads of one. */
function expectWhatwgResponse(value: unknown): void {
  const response = value as Response & Record<string, unknown>
  expect(response.constructor.name).toBe('Response')
  expect(typeof response.ok).toBe('boolean')
  expect(typeof response.headers.get).toBe('function')
  for (const method of ['arrayBuffer', 'blob', 'bytes', 'clone', 'formData', 'json', 'text']) expect(typeof response[method]).toBe('function')
  expect(response.body === null || response.body instanceof ReadableStream).toBe(true)
}

const thumbprintOf = (cert: IssuedCertificate): string => cert.x5tS256

describe.each(adapters.filter((adapter) => adapter.name !== 'node'))('$name', (adapter) => {
  let dpopApp: RunningApp & { decisions: DecisionEvent[] }
  let mtlsApp: RunningApp & { decisions: DecisionEvent[] }
  let nonceApp: RunningApp & { decisions: DecisionEvent[] }
  let impostorApp: RunningApp & { decisions: DecisionEvent[] }

  beforeAll(async () => {
    ;[dpopApp, mtlsApp, nonceApp, impostorApp] = await Promise.all([
      startService(adapter, { dpop: { mode: 'required' } }),
      startService(adapter),
      startService(adapter, { dpop: { mode: 'required', nonce: { secret: NONCE_SECRET } } }),
      startService(adapter, {}, impostorServer),
    ])
  })

  describe('fetch', () => {
    it('calls a DPoP-requiring service over mTLS with a DPoP-bound token and a fresh proof per request', async () => {
      const { client, tokens, events } = callerOf(dpopApp, 'dpop', { spiffeId: ORDERS_ID })
      const first = await client.fetch('/orders?page=1')
      expectWhatwgResponse(first)
      expect(first.status).toBe(200)
      expect(first.url).toBe(new URL('/orders?page=1', dpopApp.url).href)
      const auth = (await first.json()) as { binding: string; caller: { id: string }; peer: { x5tS256: string } }
      expect(auth.binding).toBe('dpop')
      expect(auth.caller.id).toBe(FRONTEND_ID)
      expect(auth.peer.x5tS256).toBe(thumbprintOf(frontend))
      // A second request: the same cached token, a new proof (a replayed jti would be refused).
      expect((await client.fetch('/orders')).status).toBe(200)
      expect(tokens.signed).toHaveLength(1)
      expect(retries(events)).toEqual([])
    })

    it('calls with a certificate-bound token (cnf x5t#S256 of the workload certificate)', async () => {
      const { client } = callerOf(mtlsApp, 'mtls', { spiffeId: 'spiffe://example.org/ns/orders/*' })
      const response = await client.fetch(new URL('/whoami', mtlsApp.url))
      expect(response.status).toBe(200)
      expect(((await response.json()) as { binding: string }).binding).toBe('mtls')
    })

    it('a server whose SPIFFE ID does not match: ServerIdentityError, no request reached it, nothing retried', async () => {
      const { client, events } = callerOf(impostorApp, 'mtls', { spiffeId: ORDERS_ID })
      const error = await client.fetch('/whoami').catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ServerIdentityError)
      expect(error).toMatchObject({ code: 'server_identity_mismatch', service: 'orders', expected: ORDERS_ID, actual: IMPOSTOR_ID })
      expect(impostorApp.decisions).toHaveLength(0)
      expect(retries(events)).toEqual([])
    })

    it('a service that requires a nonce: exactly one retry with it, and the nonce is remembered', async () => {
      const { client, events } = callerOf(nonceApp, 'dpop')
      const before = nonceApp.decisions.length
      expect((await client.fetch('/whoami')).status).toBe(200)
      expect(nonceApp.decisions.length - before).toBe(2)
      expect(retries(events)).toEqual(['use_dpop_nonce'])
      expect((await client.fetch('/whoami')).status).toBe(200)
      expect(nonceApp.decisions.length - before).toBe(3)
      expect(retries(events)).toEqual(['use_dpop_nonce'])
    })

    it('401 invalid_token: the token is dropped and the call retried once with a new token', async () => {
      const { client, tokens, events } = callerOf(dpopApp, 'dpop')
      tokens.staleNext = true
      const response = await client.fetch('/whoami', { method: 'POST', body: 'x' }).catch((error: unknown) => error)
      // POST /whoami is not a route: the retry went through authentication and reached the router.
      expectWhatwgResponse(response)
      expect(tokens.signed).toHaveLength(2)
      expect(tokens.invalidated).toBe(1)
      expect(retries(events)).toEqual(['invalid_token'])
    })

    it('a token refused twice is not retried a second time: ServiceRefusedError with the parsed challenge and problem', async () => {
      const { client, tokens, events } = callerOf(dpopApp, 'dpop')
      const get = tokens.get.bind(tokens)
      tokens.get = async (request) => {
        tokens.staleNext = true
        return get(request)
      }
      const error = await client.fetch('/whoami').catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ServiceRefusedError)
      const refused = error as ServiceRefusedError
      expect(refused.status).toBe(401)
      expect(refused.challenges.find((challenge) => challenge.scheme === 'DPoP')?.parameters.error).toBe('invalid_token')
      expect(refused.problem).toMatchObject({ status: 401 })
      expect(refused.message).toBe('service "orders" refused the call: HTTP 401 invalid_token')
      expect(retries(events)).toEqual(['invalid_token'])
    })

    it('a stream body is not sent twice: a 401 invalid_token is not retried (the token is still dropped)', async () => {
      const { client, tokens, events } = callerOf(dpopApp, 'dpop')
      tokens.staleNext = true
      const before = dpopApp.decisions.length
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"item":1}'))
          controller.close()
        },
      })
      const error = await client.fetch('/orders', { method: 'POST', body, duplex: 'half' } as RequestInit).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ServiceRefusedError)
      expect(dpopApp.decisions.length - before).toBe(1)
      expect(tokens.invalidated).toBe(1)
      expect(retries(events)).toEqual([])
    })

    it('403 with a challenge (insufficient scope): ServiceRefusedError; other statuses resolve', async () => {
      const { client } = callerOf(dpopApp, 'dpop', { scopes: ['other'] })
      const error = await client.fetch('/orders').catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ServiceRefusedError)
      expect((error as ServiceRefusedError).status).toBe(403)
      expect((await client.fetch('/nowhere')).status).toBe(404)
    })

    it('refuses a URL outside the service origin before asking for a token', async () => {
      const { client, tokens } = callerOf(dpopApp, 'dpop')
      await expect(client.fetch('https://elsewhere.example/orders')).rejects.toThrow(/its token is for that service only/)
      await expect(client.fetch(mtlsApp.url)).rejects.toBeInstanceOf(TypeError)
      expect(tokens.signed).toHaveLength(0)
    })

    it('onBehalfOf: the token of the request is exchanged; a context without a token is not_exchangeable', async () => {
      const { client, tokens } = callerOf(dpopApp, 'dpop')
      const response = await client.fetch('/whoami', { onBehalfOf: { credential: 'token', presented: 'the-user-token' } })
      expect(((await response.json()) as { user: { sub: string } }).user.sub).toBe('alice')
      expect(tokens.signed[0]?.subject?.value).toBe('the-user-token')
      const error = await client.fetch('/whoami', { onBehalfOf: { credential: 'certificate' } }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ClientError)
      expect(error).toMatchObject({ code: 'not_exchangeable', service: 'orders' })
      expect(tokens.signed).toHaveLength(1)
    })

    it('a certificate rotated mid-run: new connections present the new certificate, its tokens are bound to it', async () => {
      const { client, identity } = callerOf(mtlsApp, 'mtls')
      const peerOf = async (): Promise<string> => ((await (await client.fetch('/whoami')).json()) as { peer: { x5tS256: string } }).peer.x5tS256
      expect(await peerOf()).toBe(thumbprintOf(frontend))
      identity.rotate(frontendRotated)
      expect(await peerOf()).toBe(thumbprintOf(frontendRotated))
      expect(await peerOf()).toBe(thumbprintOf(frontendRotated))
    })
  })

  describe('headers', () => {
    it('headers() for undici.request and node:https, DPoP-bound', async () => {
      const { client } = callerOf(dpopApp, 'dpop')
      const url = new URL('/orders?page=2', dpopApp.url)
      const agent = new Agent({ connect: { cert: frontend.certPem, key: frontend.keyPem, ca: ca.certPem } })
      closers.push(() => agent.close())
      const viaUndici = await undiciRequest(url, { headers: { ...(await client.headers({ method: 'GET', url: '/orders?page=2' })) }, dispatcher: agent })
      expect(viaUndici.statusCode).toBe(200)
      await viaUndici.body.dump()
      const viaHttps = await httpsCall(url.href, frontend, { ...(await client.headers({ method: 'GET', url })) })
      expect(viaHttps.status).toBe(200)
    })

    it('headers() after use_dpop_nonce: asked again with the nonce the service sent', async () => {
      const { client } = callerOf(nonceApp, 'dpop')
      const url = new URL('/whoami', nonceApp.url).href
      const first = await new Promise<{ status: number; nonce: string }>((resolve, reject) => {
        void client.headers({ method: 'GET', url }).then((headers) => {
          const req = httpsRequest(url, { headers: { ...headers }, cert: frontend.certPem, key: frontend.keyPem, ca: ca.certPem, agent: false }, (res) => {
            res.resume()
            resolve({ status: res.statusCode ?? 0, nonce: String(res.headers['dpop-nonce']) })
          })
          req.on('error', reject)
          req.end()
        }, reject)
      })
      expect(first.status).toBe(401)
      const again = await httpsCall(url, frontend, { ...(await client.headers({ method: 'GET', url, dpopNonce: first.nonce })) })
      expect(again.status).toBe(200)
    })

    it('a stolen token is useless: replayed headers, a proof of another key, another certificate', async () => {
      const dpop = callerOf(dpopApp, 'dpop')
      const url = new URL('/whoami', dpopApp.url).href
      const headers = { ...(await dpop.client.headers({ method: 'GET', url: '/whoami' })) }
      expect((await httpsCall(url, frontend, headers)).status).toBe(200)
      // The same headers again, from another workload: the proof's jti was used.
      expect((await httpsCall(url, stranger, headers)).status).toBe(401)
      // The token with a fresh proof of the thief's own key: not the key the token is bound to.
      const thief = await createDpopKey('ES256')
      const thiefClient = createServiceClient({
        name: 'orders',
        service: resolveServices({ orders: { url: dpopApp.url, resource: AUDIENCE } }).get('orders')!,
        tokens: {
          get: async () => ({ value: headers.authorization.slice('DPoP '.length), scheme: 'DPoP', expiresAt: Date.now() + 60_000 }),
          invalidate() {},
          close: async () => {},
        },
        dpop: {
          keyPair: { privateKey: thief.privateKey, publicKey: thief.publicKey },
          alg: thief.alg,
          publicJwk: thief.publicJwk as Record<string, string>,
          thumbprint: thief.jkt,
        },
        connections: dpop.connections,
        emit() {},
        subjectOf,
      })
      expect((await httpsCall(url, stranger, { ...(await thiefClient.headers({ method: 'GET', url })) })).status).toBe(401)
      // A certificate-bound token sent over another certificate.
      const mtls = callerOf(mtlsApp, 'mtls')
      const bound = { ...(await mtls.client.headers({ method: 'GET', url: '/whoami' })) }
      expect((await httpsCall(new URL('/whoami', mtlsApp.url).href, frontend, bound)).status).toBe(200)
      expect((await httpsCall(new URL('/whoami', mtlsApp.url).href, stranger, bound)).status).toBe(401)
    })
  })

  describe('dispatcher', () => {
    it('dispatcher() with undici.request: headers added, certificate presented, server identity checked', async () => {
      const { client } = callerOf(dpopApp, 'dpop', { spiffeId: ORDERS_ID })
      const response = await undiciRequest(new URL('/orders', dpopApp.url), { dispatcher: client.dispatcher(), headers: { 'x-trace': '1' } })
      expect(response.statusCode).toBe(200)
      expect(((await response.body.json()) as { binding: string }).binding).toBe('dpop')
      const second = await undiciRequest(new URL('/orders', dpopApp.url), { method: 'GET', dispatcher: client.dispatcher() })
      expect(second.statusCode).toBe(200)
      await second.body.dump()

      const impostor = callerOf(impostorApp, 'mtls', { spiffeId: ORDERS_ID })
      const error = await undiciRequest(new URL('/whoami', impostorApp.url), { dispatcher: impostor.client.dispatcher() }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ServerIdentityError)
      expect(impostorApp.decisions).toHaveLength(0)
    })

    it('a new connection that would resume a TLS session is checked again (a resumed session shows no certificate)', async () => {
      const { client } = callerOf(dpopApp, 'dpop', { spiffeId: ORDERS_ID })
      for (let i = 0; i < 3; i++) {
        const response = await undiciRequest(new URL('/orders', dpopApp.url), { dispatcher: client.dispatcher(), headers: { connection: 'close' } })
        expect(response.statusCode).toBe(200)
        await response.body.dump()
      }
    })

    it('dispatcher(): a token that cannot be had fails the request with that error, nothing sent', async () => {
      const { client, tokens } = callerOf(dpopApp, 'dpop')
      const before = dpopApp.decisions.length
      tokens.get = () => Promise.reject(new ClientError('authorization_server_unavailable', 'the authorization server is unavailable (timeout)'))
      const error = await undiciRequest(new URL('/orders', dpopApp.url), { dispatcher: client.dispatcher() }).catch((caught: unknown) => caught)
      expect(error).toMatchObject({ code: 'authorization_server_unavailable' })
      expect(dpopApp.decisions.length).toBe(before)
    })

    it('dispatcher() for the user of a request, and a token-less context refused at once', async () => {
      const { client } = callerOf(mtlsApp, 'mtls')
      const response = await undiciRequest(new URL('/whoami', mtlsApp.url), { dispatcher: client.dispatcher({ onBehalfOf: { presented: 'user-token' } }) })
      expect(((await response.body.json()) as { user: { sub: string } }).user.sub).toBe('alice')
      expect(() => client.dispatcher({ onBehalfOf: {} })).toThrow(expect.objectContaining({ code: 'not_exchangeable' }) as Error)
    })
  })
})

/** A plain https server (no Callsign) served with `cert`, counting the requests it gets; `respond: false` never answers. */
async function startPlainServer(cert: IssuedCertificate, respond = true): Promise<{ url: string; server: HttpsServer; requests: number }> {
  const state = { url: '', server: undefined as unknown as HttpsServer, requests: 0 }
  state.server = createHttpsServer({ cert: cert.certPem, key: cert.keyPem, ca: ca.certPem, requestCert: true }, (req, res) => {
    state.requests++
    state.server.emit('callsign-test-request')
    if (respond) res.end('ok')
  })
  state.server.listen(0, '127.0.0.1')
  await once(state.server, 'listening')
  state.url = `https://127.0.0.1:${(state.server.address() as AddressInfo).port}`
  closers.push(async () => {
    state.server.closeAllConnections()
    await new Promise((resolve) => state.server.close(resolve))
  })
  return state
}

describe('no answer from the service', () => {
  it('a closed port: ServiceUnavailableError, reason network, the original error as cause, no token in it', async () => {
    const closed = await startPlainServer(ordersServer)
    await new Promise((resolve) => closed.server.close(resolve))
    const { client } = callerOf(closed, 'dpop')
    const { authorization } = await client.headers({ method: 'GET', url: '/orders' })
    const error = await client.fetch('/orders').catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(ServiceUnavailableError)
    expect(error).toBeInstanceOf(ClientError)
    expect(error).toMatchObject({ name: 'ServiceUnavailableError', code: 'service_unavailable', reason: 'network', service: 'orders' })
    expect((error as Error).message).toBe('service "orders" could not be reached: no connection (ECONNREFUSED)')
    expect((error as Error).cause).toBeInstanceOf(TypeError)
    expect(((error as Error).cause as Error).cause).toMatchObject({ code: 'ECONNREFUSED' })
    expect(inspect(error, { depth: 10 })).not.toContain(authorization.split(' ')[1]!.split('.')[2])
  })

  it('a server whose certificate names another host: ServiceUnavailableError, reason tls; no request reached it', async () => {
    const otherHost = await ca.issueServerCertificate({ spiffeId: ORDERS_ID, dnsNames: ['orders.elsewhere.example'], ipAddresses: [] })
    const server = await startPlainServer(otherHost)
    for (const service of [{}, { spiffeId: ORDERS_ID }]) {
      const { client } = callerOf(server, 'mtls', service)
      const error = await client.fetch('/orders').catch((thrown: unknown) => thrown)
      expect(error).toBeInstanceOf(ServiceUnavailableError)
      expect(error).toMatchObject({ code: 'service_unavailable', reason: 'tls', service: 'orders' })
      expect((error as Error).message).toBe('service "orders" could not be reached: TLS refused the connection (ERR_TLS_CERT_ALTNAME_INVALID)')
    }
    expect(server.requests).toBe(0)
  })

  it('a server of an unknown CA: ServiceUnavailableError, reason tls', async () => {
    const otherCa = await createTestCa()
    const server = await startPlainServer(await otherCa.issueServerCertificate({ spiffeId: ORDERS_ID }))
    const { client } = callerOf(server, 'mtls')
    const error = await client.fetch('/orders').catch((thrown: unknown) => thrown)
    expect(error).toMatchObject({ code: 'service_unavailable', reason: 'tls' })
    expect(server.requests).toBe(0)
  })

  it('dispatcher(): a closed port and a certificate for another host fail with ServiceUnavailableError (network, tls); an abort stays an abort', async () => {
    const closed = await startPlainServer(ordersServer)
    await new Promise((resolve) => closed.server.close(resolve))
    const refused = await undiciRequest(new URL('/orders', closed.url), { dispatcher: callerOf(closed, 'dpop').client.dispatcher() }).catch(
      (thrown: unknown) => thrown,
    )
    expect(refused).toBeInstanceOf(ServiceUnavailableError)
    expect(refused).toMatchObject({ code: 'service_unavailable', reason: 'network', service: 'orders', cause: { code: 'ECONNREFUSED' } })

    const otherHost = await ca.issueServerCertificate({ spiffeId: ORDERS_ID, dnsNames: ['orders.elsewhere.example'], ipAddresses: [] })
    const server = await startPlainServer(otherHost)
    const tls = await undiciRequest(new URL('/orders', server.url), { dispatcher: callerOf(server, 'mtls').client.dispatcher() }).catch(
      (thrown: unknown) => thrown,
    )
    expect(tls).toMatchObject({ code: 'service_unavailable', reason: 'tls' })
    expect(server.requests).toBe(0)

    const silent = await startPlainServer(ordersServer, false)
    const controller = new AbortController()
    silent.server.once('callsign-test-request', () => controller.abort())
    const aborted = await undiciRequest(new URL('/orders', silent.url), {
      dispatcher: callerOf(silent, 'mtls').client.dispatcher(),
      signal: controller.signal,
    }).catch((thrown: unknown) => thrown)
    expect(aborted).not.toBeInstanceOf(ClientError)
    expect(aborted).toMatchObject({ name: 'AbortError' })
  })

  it("an abort through the caller's signal stays the standard AbortError", async () => {
    const server = await startPlainServer(ordersServer, false)
    const { client } = callerOf(server, 'mtls')
    const controller = new AbortController()
    server.server.once('callsign-test-request', () => controller.abort())
    const error = await client.fetch('/orders', { signal: controller.signal }).catch((thrown: unknown) => thrown)
    expect(error).not.toBeInstanceOf(ClientError)
    expect(error).toMatchObject({ name: 'AbortError' })
    expect(server.requests).toBe(1)
    const before = await client.fetch('/orders', { signal: AbortSignal.abort() }).catch((thrown: unknown) => thrown)
    expect(before).toMatchObject({ name: 'AbortError' })
    expect(before).not.toBeInstanceOf(ClientError)
  })
})

// Compile-only copies of the @callsign/client snippets in docs/client.md and README.md ("Calling the
// next service") (checked by `pnpm typecheck` under strict, never executed): every option name and
// every error field they use must exist. Kept as written, with types only where JavaScript has none
// (free variables). If a snippet changes, change its copy here.
import { readFileSync } from 'node:fs'
// The snippets' `import https from 'node:https'` needs esModuleInterop, which this repo keeps off.
import * as https from 'node:https'
import express from 'express'
import { request } from 'undici'
import { callsign, createServerTlsOptions, requireAuth, type AuthContext } from '@callsign/express'
import {
  AuthorizationServerError,
  AuthorizationServerUnavailableError,
  ClientError,
  createClient,
  ServerIdentityError,
  ServiceRefusedError,
  ServiceUnavailableError,
  type ClientEvent,
  type ServiceOptions,
} from '@callsign/client'

declare const req: { auth: AuthContext }
declare const res: express.Response
declare const issuer: string
declare const services: Record<string, ServiceOptions>
declare const meshCa: string

// docs/client.md, step 4 (frontend.mjs)
export async function frontend(): Promise<void> {
  const identity = { cert: { path: 'dev/frontend.pem' }, key: { path: 'dev/frontend-key.pem' }, ca: { path: 'dev/ca.pem' } }
  const client = createClient({
    issuer: process.env.ISSUER!,
    clientId: 'spiffe://example.org/ns/web/sa/frontend',
    auth: 'tls_client_auth',
    identity,
    dpop: true,
    services: {
      orders: {
        url: 'https://127.0.0.1:8443',
        resource: 'https://orders.example',
        scopes: ['orders:read'],
        spiffeId: 'spiffe://example.org/ns/shop/sa/orders',
      },
    },
    onEvent: (event) => console.log('client:', event.type, event.service ?? '', event.grant ?? event.reason ?? ''),
  })

  const app = express()
  app.use(
    callsign({
      issuers: { issuer: process.env.ISSUER!, audience: 'https://frontend.example' },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: { 'spiffe://example.org/ns/edge/sa/gateway': ['orders:read'] },
    }),
  )
  app.get(
    '/checkout',
    requireAuth({ onBehalfOf: 'required' }, async (req, res) => {
      try {
        const response = await client.service('orders').fetch('/orders', { onBehalfOf: req.auth })
        res.status(response.status).json({ user: req.auth.user.sub, orders: await response.json() })
      } catch (error) {
        if (!(error instanceof ClientError)) throw error
        res.status(502).json({ error: error.code, message: error.message })
      }
    }),
  )

  const serverTls = createServerTlsOptions({ ...identity, watch: true })
  const server = https.createServer(serverTls, app)
  serverTls.attach(server)

  // Step 5: a call as the service itself.
  await client.service('orders').fetch('/orders/stats')

  // Step 6: headers() and dispatcher().
  const headers = await client.service('orders').headers({ method: 'GET', url: '/orders', onBehalfOf: req.auth })
  https.get(
    'https://127.0.0.1:8443/orders',
    {
      headers,
      ca: readFileSync('dev/ca.pem'),
      cert: readFileSync('dev/frontend.pem'),
      key: readFileSync('dev/frontend-key.pem'),
    },
    () => {},
  )
  const { statusCode, body } = await request('https://127.0.0.1:8443/orders', {
    dispatcher: client.service('orders').dispatcher({ onBehalfOf: req.auth }),
  })
  void statusCode
  void body
  await client.ready()
  await client.close()
}

// ServiceHeaders as node:https headers, as is (a type alias, so no spreading into an object).
export async function httpsRequestHeaders(client: ReturnType<typeof createClient>, url: string): Promise<void> {
  const svc = client.service('orders')
  https.request(url, { headers: await svc.headers({ method: 'GET', url, onBehalfOf: req.auth }) }).end()
}

// docs/client.md, step 7
export function clientAuthentication(identity: { cert: { path: string }; key: { path: string } }): void {
  createClient({ issuer, clientId: 'spiffe://example.org/ns/web/sa/frontend', auth: 'tls_client_auth', identity, services })
  createClient({ issuer, clientId: 'frontend', auth: 'private_key_jwt', privateKey: readFileSync('client-key.pem', 'utf8'), services })
  createClient({ issuer, clientId: 'frontend', auth: 'client_secret_basic', clientSecret: process.env.CLIENT_SECRET!, services })
  // Step 13: an authorization server with a public certificate, services on a private CA.
  createClient({ issuer, clientId: 'frontend', auth: 'tls_client_auth', identity: { ...identity, ca: meshCa }, issuerCa: 'system', services })
  createClient({ issuer, clientId: 'frontend', auth: 'tls_client_auth', identity: { ...identity, ca: meshCa }, issuerCa: [meshCa], services })
}

// docs/client.md, step 9
export async function errors(client: ReturnType<typeof createClient>): Promise<unknown> {
  try {
    await client.service('orders').fetch('/orders', { onBehalfOf: req.auth })
  } catch (error) {
    if (error instanceof ServiceRefusedError && error.status === 403) return res.status(403).json({ refused: error.problem?.code })
    if (error instanceof AuthorizationServerUnavailableError) return res.status(503).set('retry-after', '5').end()
    throw error
  }
  return undefined
}

// docs/client.md, steps 9, 10 and 13: the fields the tables name.
export function fields(error: ClientError, event: ClientEvent): unknown[] {
  const server = error instanceof AuthorizationServerError ? [error.error, error.errorDescription, error.status] : []
  const unavailable = error instanceof AuthorizationServerUnavailableError ? [error.reason, error.status] : []
  const refused = error instanceof ServiceRefusedError ? [error.status, error.challenges, error.problem?.code, error.problem?.side] : []
  const identity = error instanceof ServerIdentityError ? [error.expected, error.actual] : []
  const unreachable = error instanceof ServiceUnavailableError ? [error.reason, error.cause] : []
  const { type, time, service, grant, binding, durationMs, reason, code, expiresIn } = event
  return [
    error.code,
    error.service,
    ...server,
    ...unavailable,
    ...refused,
    ...identity,
    ...unreachable,
    type,
    time,
    service,
    grant,
    binding,
    durationMs,
    reason,
    code,
    event.error,
    expiresIn,
  ]
}

// README.md, "Calling the next service"
export function readme(app: express.Express): void {
  const client = createClient({
    issuer: 'https://auth.example.com',
    clientId: 'spiffe://example.org/ns/web/sa/frontend',
    auth: 'tls_client_auth',
    identity: { cert: { path: '/run/svid/tls.crt' }, key: { path: '/run/svid/tls.key' }, ca: { path: '/run/svid/ca.crt' } },
    dpop: true,
    services: {
      orders: {
        url: 'https://orders.internal',
        resource: 'https://orders.example',
        scopes: ['orders:read'],
        spiffeId: 'spiffe://example.org/ns/shop/sa/orders',
      },
    },
  })
  app.get('/checkout', requireAuth({ onBehalfOf: 'required' }), async (req, res) => {
    const response = await client.service('orders').fetch('/orders', { onBehalfOf: req.auth })
    res.json(await response.json())
  })
}

// Compile-only copies of every node:http snippet in README.md (Usage, the sidecar example, Without
// a framework), docs/node.md and packages/node/README.md that touches the auth context (checked by
// `pnpm typecheck` under strict, never executed). Kept as written, with types only where
// JavaScript has none (function parameters, free variables). If a snippet changes, change its copy here.
import { readFileSync } from 'node:fs'
// The snippets' `import https from 'node:https'` needs esModuleInterop, which this repo keeps off.
import * as http from 'node:http'
import * as https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { callsign, getAuth, requireAuth } from '@callsign/node'
import { AuthError, compileRule, createCallsign, toHttpResponse, type CallsignOptions } from '@callsign/core'

declare const tlsOptions: https.ServerOptions
declare const cert: string, key: string, ca: string
declare const options: CallsignOptions
declare const req: IncomingMessage, res: ServerResponse

// docs/node.md, step 3 (app.mjs)
export function createHandler({ issuer, audience }: { issuer: string; audience: string }) {
  const authenticate = callsign({
    issuers: { issuer, audience },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    // What each service may ever do, whatever its token says. Unlisted services are refused.
    callers: {
      'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
      'spiffe://example.org/ns/batch/*': ['orders:read'],
    },
  })
  const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  // Rules are compiled once, here; each writes the 401/403 (and returns false), or runs its handler.
  const listOrders = requireAuth({ scopes: ['orders:read'] }, (req, res) =>
    json(res, 200, { caller: req.auth.caller.id, user: req.auth.user?.sub ?? null, binding: req.auth.binding }),
  )
  const placeOrder = requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) =>
    json(res, 201, { placedBy: req.auth.user.sub, via: req.auth.caller.id }),
  )

  return async (req: IncomingMessage, res: ServerResponse) => {
    try {
      if (!(await authenticate(req, res))) return // the refusal is already written
      const { pathname } = new URL(req.url ?? '/', 'https://localhost')
      if (pathname === '/orders' && req.method === 'GET') return listOrders(req, res)
      if (pathname === '/orders' && req.method === 'POST') return placeOrder(req, res)
      json(res, 404, { error: 'not found' })
    } catch (error) {
      console.error(error)
      if (!res.headersSent) json(res, 500, { error: 'internal error' })
    }
  }
}

// README.md, Usage > Plain node:http
{
  const authenticate = callsign({
    issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read'] },
  })
  const listOrders = requireAuth({ scopes: ['orders:read'] }, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ caller: req.auth.caller.id }))
  })

  https
    .createServer(tlsOptions, async (req, res) => {
      if (!(await authenticate(req, res))) return // the 400/401/503 is already written
      listOrders(req, res) // writes the 401/403, or runs the handler
    })
    .listen(8443)
}

// README.md, Usage > Without a framework
{
  const guard = createCallsign(options)
  const rule = compileRule({ scopes: ['orders:read'] })
  try {
    const auth = await guard.authenticate(req)
    // undefined only with credentials: 'optional' when none were sent
    if (!auth) throw new AuthError('credentials_missing', 'an access token is required')
    guard.authorize(auth, rule)
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    const { status, headers, body } = toHttpResponse(error)
    res.writeHead(status, headers).end(body)
  }
}

// README.md, Behind a mesh or a proxy > Envoy and Istio (the Node side)
{
  const authenticate = callsign({
    issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example.com' },
    mtls: {
      mode: 'required',
      forwarded: {
        trustedProxies: { cidrs: ['127.0.0.1/32', '::1/128'] }, // the sidecar
        ca: readFileSync('/etc/tls/ca.pem', 'utf8'),
        elements: 'single', // SANITIZE_SET sends exactly one element
      },
    },
    dpop: { origin: 'https://orders.example.com' }, // the hop to Node is plain HTTP
  })
  const canRead = requireAuth({ scopes: ['orders:read'] })

  http
    .createServer(async (req, res) => {
      if (!(await authenticate(req, res)) || !canRead(req, res)) return
      res.end(JSON.stringify({ caller: getAuth(req).caller })) // { id: 'spiffe://…', source: 'forwarded' }
    })
    .listen(8080, '127.0.0.1') // reachable only through the sidecar
}

// packages/node/README.md, Example
{
  const authenticate = callsign({
    issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read'] },
  })
  const listOrders = requireAuth({ scopes: ['orders:read'] }, (req, res) => res.end(JSON.stringify({ caller: req.auth.caller.id })))
  https
    .createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false }, async (req, res) => {
      if (await authenticate(req, res)) listOrders(req, res) // otherwise the refusal is already written
    })
    .listen(8443)
}

// packages/node/src/index.ts, module example, getAuth's and requireAuth's examples
{
  const authenticate = callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
  const listOrders = requireAuth({ scopes: ['orders:read'] }, (req, res) => res.end(JSON.stringify({ caller: req.auth.caller.id })))
  https.createServer(tlsOptions, async (req, res) => {
    if (await authenticate(req, res)) listOrders(req, res) // otherwise the refusal is already written
  })
  const canWrite = requireAuth({ onBehalfOf: 'required' })
  http.createServer(async (req, res) => {
    if (!(await authenticate(req, res)) || !canWrite(req, res)) return
    const placedBy: string = getAuth(req, { onBehalfOf: 'required' }).user.sub
    const placeOrder = requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
      res.writeHead(201).end(JSON.stringify({ placedBy: req.auth.user.sub }))
    })
    return placedBy && placeOrder(req, res)
  })
}

// Callsign demo: everything on 127.0.0.1, nothing to set up.
//
// A throwaway CA issues SPIFFE workload certificates, a local issuer (RFC 8414 discovery + JWKS)
// signs RFC 9068 access tokens, and an Express service protected by Callsign listens over real
// mTLS. The demo then makes real HTTPS calls with client certificates and prints what Callsign
// decided. Then both ends of a call: three services (Express and Fastify, each protected by
// Callsign) call one another for alice with @callsign/client, over mTLS, with tokens exchanged at
// the issuer's token endpoint (RFC 8693) and bound to a DPoP key or to the caller's certificate.
// Exit code 1 if any decision differs from the expected one, so it doubles as a smoke test.
//
// Run: pnpm demo   (or, once the packages are built: node examples/demo/demo.js)
import https from 'node:https'
import express from 'express'
import Fastify from 'fastify'
import { Agent, fetch as undiciFetch } from 'undici'
import { ClientError, createClient } from '@callsign/client'
import { callsign, requireAuth } from '@callsign/express'
import callsignFastify, { requireAuth as fastifyRequireAuth } from '@callsign/fastify'
import { createDpopKey, createDpopProof, createTestCa, startTestIssuer } from '@callsign/testing'

const AUDIENCE = 'https://orders.example'
const FRONTEND = 'spiffe://example.org/ns/web/sa/frontend'
const REPORT = 'spiffe://example.org/ns/batch/sa/report'
const GATEWAY = 'spiffe://example.org/ns/edge/sa/gateway'
const ORDERS = 'spiffe://example.org/ns/shop/sa/orders'
const PAYMENTS = 'spiffe://example.org/ns/shop/sa/payments'
const SHORT = { [FRONTEND]: 'frontend', [REPORT]: 'report', [GATEWAY]: 'gateway', [ORDERS]: 'orders', [PAYMENTS]: 'payments' }

// ---- 1. Identities: a CA, two workloads, one impostor from a CA nobody trusts ------------------
const ca = await createTestCa({ commonName: 'Callsign Demo CA' })
const serverCert = await ca.issueServerCertificate()
const frontend = await ca.issueCertificate({ spiffeId: FRONTEND })
const report = await ca.issueCertificate({ spiffeId: REPORT })
const rogueCa = await createTestCa({ commonName: 'Rogue CA' })
const impostor = await rogueCa.issueCertificate({ spiffeId: FRONTEND })

// ---- 2. A token issuer: RFC 8414 metadata + JWKS on loopback ------------------------------------
const issuer = await startTestIssuer({ discovery: 'oauth' })

// ---- 3. The protected service --------------------------------------------------------------------
const guard = callsign({
  issuers: { issuer: issuer.issuer, audience: AUDIENCE }, // jwks_uri found by RFC 8414 discovery
  mtls: { mode: 'required', trustDomains: ['example.org'] },
  // What each service may ever do, whatever its token says.
  callers: {
    [FRONTEND]: ['orders:read', 'orders:write'],
    'spiffe://example.org/ns/batch/*': ['orders:read', 'stock:read'],
  },
  // mTLS only: what a service may do on its certificate alone, without any token.
  certificateGrants: { [REPORT]: ['stock:read'] },
  prefetch: true,
})

const app = express()
app.use(guard)
const who = (auth) => ({ caller: auth.caller.id, user: auth.user?.sub ?? null, binding: auth.binding, credential: auth.credential })
app.get('/orders', requireAuth({ scopes: ['orders:read'] }), (req, res) => {
  res.json({ orders: [{ id: 1, item: 'coffee' }], ...who(req.auth) })
})
app.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }), express.json(), (req, res) => {
  res.status(201).json({ id: 2, item: req.body?.item ?? null, ...who(req.auth) })
})
app.get('/reports/daily', requireAuth({ scopes: ['orders:read'], callers: ['spiffe://example.org/ns/batch/*'], onBehalfOf: 'forbidden' }), (req, res) =>
  res.json({ total: 1, ...who(req.auth) }),
)
app.get('/stock', requireAuth({ scopes: ['stock:read'] }), (req, res) => res.json({ coffee: 12, ...who(req.auth) }))

const server = https.createServer(
  {
    cert: serverCert.certPem,
    key: serverCert.keyPem,
    ca: [ca.certPem], // pinned: only this CA's client certificates are "authorized"
    requestCert: true,
    rejectUnauthorized: false, // let Callsign answer a bad certificate with a precise 401
  },
  app,
)
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address()
await guard.guard.ready() // keys discovered and cached before the first call

// ---- 4. Tokens -----------------------------------------------------------------------------------
const sign = (claims, options = {}) => issuer.signAccessToken(claims, { audience: AUDIENCE, ...options })
const boundTo = (cert) => ({ cnf: { 'x5t#S256': cert.x5tS256 } }) // RFC 8705 certificate-bound token
// Token exchange (RFC 8693): alice's token, delegated to the frontend (act), bound to its certificate.
const aliceViaFrontend = (scope) => sign({ sub: 'alice', act: { sub: FRONTEND }, scope, ...boundTo(frontend) })
const aliceReadWrite = await aliceViaFrontend('orders:read orders:write')
const aliceReadOnly = await aliceViaFrontend('orders:read')
// Alice's token delegated to the report service: the user has granted write, the service may not.
const aliceViaReport = await sign({ sub: 'alice', act: { sub: REPORT }, scope: 'orders:read orders:write', ...boundTo(report) })
// Service tokens (client credentials): the service acts for itself.
const reportService = await sign({ sub: REPORT, client_id: REPORT, scope: 'orders:read', ...boundTo(report) })
const reportNoScope = await sign({ sub: REPORT, client_id: REPORT, ...boundTo(report) })
// Forged: the payload of a read-only token edited to add orders:write, the signature kept.
const [header, payload, signature] = aliceReadOnly.split('.')
const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
claims.scope = 'orders:read orders:write'
const forged = [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.')
const expired = await sign({ sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read' }, { expiresInSeconds: -120 })
const otherAudience = await sign({ sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read' }, { audience: 'https://billing.example' })
// An unbound token naming the frontend as the acting service, relayed by the report service.
const aliceUnbound = await sign({ sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read' })
// DPoP (RFC 9449): alice's token bound to the frontend's proof key; one fresh proof per request.
const frontendKey = await createDpopKey('ES256')
const aliceDpop = await sign({ sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read' }, { dpopJkt: frontendKey.jkt })
const proofFor = (method, path, key = frontendKey) => createDpopProof(key, { method, url: `https://127.0.0.1:${port}${path}`, accessToken: aliceDpop })
const dpopProof = await proofFor('GET', '/orders')
const proofOtherPath = await proofFor('GET', '/reports/daily')
const proofWrongKey = await proofFor('GET', '/orders', await createDpopKey('ES256'))

// ---- 5. The calls --------------------------------------------------------------------------------
const calls = [
  { what: 'frontend for alice: GET /orders', cert: frontend, token: aliceReadWrite, path: '/orders', expect: [200] },
  { what: 'frontend for alice: POST /orders', cert: frontend, token: aliceReadWrite, method: 'POST', path: '/orders', expect: [201] },
  { what: 'report, own token: GET /reports/daily (batch only)', cert: report, token: reportService, path: '/reports/daily', expect: [200] },
  {
    what: 'report for alice: POST /orders (beyond allowance)',
    cert: report,
    token: aliceViaReport,
    method: 'POST',
    path: '/orders',
    expect: [403, 'caller_scope_exceeded'],
  },
  { what: 'frontend for alice: GET /reports/daily', cert: frontend, token: aliceReadWrite, path: '/reports/daily', expect: [403, 'caller_forbidden'] },
  { what: 'report, own token without scope: GET /orders', cert: report, token: reportNoScope, path: '/orders', expect: [403, 'insufficient_scope'] },
  {
    what: 'frontend for alice (read only): POST /orders',
    cert: frontend,
    token: aliceReadOnly,
    method: 'POST',
    path: '/orders',
    expect: [403, 'insufficient_scope'],
  },
  { what: 'no client certificate', cert: undefined, token: aliceReadWrite, path: '/orders', expect: [401, 'mtls_required'] },
  { what: 'certificate from an untrusted CA (claims frontend)', cert: impostor, token: aliceReadWrite, path: '/orders', expect: [401, 'peer_unauthorized'] },
  { what: 'bad token: scope edited, signature kept', cert: frontend, token: forged, method: 'POST', path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'expired token', cert: frontend, token: expired, path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'token for another audience', cert: frontend, token: otherAudience, path: '/orders', expect: [401, 'invalid_token'] },
  { what: "report replays frontend's token (stolen)", cert: report, token: aliceReadWrite, path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'report relays an unbound token naming frontend', cert: report, token: aliceUnbound, path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'frontend for alice, DPoP proof: GET /orders', cert: frontend, token: aliceDpop, dpop: dpopProof, path: '/orders', expect: [200] },
  { what: 'the same DPoP proof again (replay)', cert: frontend, token: aliceDpop, dpop: dpopProof, path: '/orders', expect: [401, 'invalid_dpop_proof'] },
  { what: 'DPoP proof made for another URL', cert: frontend, token: aliceDpop, dpop: proofOtherPath, path: '/orders', expect: [401, 'invalid_dpop_proof'] },
  { what: 'DPoP token with a proof by another key', cert: frontend, token: aliceDpop, dpop: proofWrongKey, path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'DPoP token sent as a Bearer token', cert: frontend, token: aliceDpop, path: '/orders', expect: [401, 'invalid_token'] },
  { what: 'report, no token (mTLS only): GET /stock', cert: report, path: '/stock', expect: [200] },
  { what: 'frontend, no token (no certificate grant): GET /stock', cert: frontend, path: '/stock', expect: [401, 'credentials_missing'] },
  { what: 'report, no token (mTLS only): GET /orders (not granted)', cert: report, path: '/orders', expect: [403, 'insufficient_scope'] },
]

/** One HTTPS request on a fresh connection (a connection carries one client certificate). */
function request({ cert, token, dpop, method = 'GET', path, to = port }) {
  const body = method === 'POST' ? JSON.stringify({ item: 'tea' }) : undefined
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: to,
        method,
        path,
        agent: false,
        ca: [ca.certPem],
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
        headers: {
          ...(token ? { authorization: `${dpop ? 'DPoP' : 'Bearer'} ${token}` } : {}),
          ...(dpop ? { dpop } : {}),
          ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
        },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const challengeError = (header) => /error="([^"]*)"/.exec(header ?? '')?.[1]
const short = (id) => SHORT[id] ?? id

const rows = []
let unexpected = 0
try {
  for (const [index, call] of calls.entries()) {
    const { status, headers, text } = await request(call)
    let body
    try {
      body = JSON.parse(text)
    } catch {
      body = {}
    }
    const allowed = status < 400
    const code = allowed ? undefined : (body.code ?? challengeError(headers['www-authenticate']))
    let reason
    if (allowed) {
      const how =
        body.credential === 'certificate'
          ? 'certificate only, no token'
          : ({ mtls: 'cert-bound token', dpop: 'DPoP-bound token, proof checked' }[body.binding] ?? `${body.binding} token`)
      reason = `caller ${short(body.caller)}${body.user ? `, user ${body.user}` : ', no user'}, ${how}`
    } else {
      const error = challengeError(headers['www-authenticate'])
      reason = `${body.detail ?? error ?? text}${body.side ? ` (${body.side} side)` : ''}`
    }
    const [expectedStatus, expectedCode] = call.expect
    const ok = status === expectedStatus && (expectedCode === undefined || code === expectedCode)
    if (!ok) unexpected++
    rows.push([
      String(index + 1),
      call.what,
      String(status),
      allowed ? 'allowed' : 'refused',
      code ?? '-',
      ok ? reason : `${reason}  <-- UNEXPECTED, wanted ${expectedStatus}${expectedCode ? ` ${expectedCode}` : ''}`,
    ])
  }
} finally {
  server.close()
  server.closeAllConnections()
  await issuer.close()
}

// ---- 6. The table ----------------------------------------------------------------------------------
// Two lines a call (the call, then why), so the table fits a 120-column terminal.
const WIDTH = 120
const INDENT = '      '
const headings = ['#', 'Call', 'Status', 'Decision']
const cellsOf = (row) => [row[0], row[1], row[2], row[3] === 'allowed' ? 'allowed' : `refused: ${row[4]}`]
/** `text` in lines of at most WIDTH columns after INDENT, broken between words. */
function wrap(text) {
  const lines = []
  let current = ''
  for (const word of text.split(' ')) {
    if (current && INDENT.length + current.length + 1 + word.length > WIDTH) {
      lines.push(INDENT + current)
      current = word
    } else current = current ? `${current} ${word}` : word
  }
  if (current) lines.push(INDENT + current)
  return lines
}
function printTable(rows) {
  const widths = headings.map((h, i) => Math.max(h.length, ...rows.map((row) => cellsOf(row)[i].length)))
  const line = (cells) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  const rule = '-'.repeat(
    Math.min(
      WIDTH,
      widths.reduce((sum, w) => sum + w + 2, -2),
    ),
  )
  console.log(line(headings))
  console.log(rule)
  for (const row of rows) {
    console.log(line(cellsOf(row)))
    for (const text of wrap(row[5])) console.log(text)
  }
  console.log(rule)
}
const tally = (rows) => `${rows.filter((r) => r[3] === 'allowed').length} allowed, ${rows.filter((r) => r[3] === 'refused').length} refused`

console.log(`
Callsign demo: an orders service on https://127.0.0.1:${port}, issuer ${issuer.issuer}
  mTLS proves WHICH SERVICE calls (SPIFFE ID in its client certificate, CA pinned by the server);
  the access token says ON WHOSE BEHALF (act claim) and with what scopes, and is bound to the certificate
  or to a DPoP key (RFC 8705 / RFC 9449), so a stolen or relayed token is refused;
  a call passes only if the service's allowance AND the token's (user's) scopes cover the route.
  Allowances: frontend may orders:read orders:write; batch/* (report) may orders:read stock:read.
  Certificate grants (mTLS only, no token): report may stock:read on its certificate alone.
`)
printTable(rows)
console.log(
  unexpected === 0
    ? `${rows.length} calls, every decision as expected (${tally(rows)}).
Refusals are RFC 9457 problem documents with a WWW-Authenticate challenge (RFC 6750); 403s name the side that failed.`
    : `${unexpected} of ${rows.length} calls did not get the expected decision.`,
)

// ---- 7. Both ends of a call: three services calling each other with @callsign/client ------------
// gateway (the demo, where alice logged in) -> frontend (Express) -> orders (Express) -> payments
// (Fastify). Each service is protected by Callsign; each call to the next one is made by
// @callsign/client for alice (`onBehalfOf: req.auth`): an RFC 8693 token exchange at the issuer's
// token endpoint (tls_client_auth: the workload certificate is the client's credential), then the
// call over mTLS, the server's SPIFFE ID checked before anything is sent.
const FRONTEND_AUD = 'https://frontend.example'
const ORDERS_AUD = 'https://orders.example'
const PAYMENTS_AUD = 'https://payments.example'
const workload = (spiffeId) => ca.issueCertificate({ spiffeId, usage: 'both', ipAddresses: ['127.0.0.1'] }) // client and server
const [gatewayCert, frontendCert, ordersCert, paymentsCert, authServerCert] = await Promise.all([
  ca.issueCertificate({ spiffeId: GATEWAY }),
  workload(FRONTEND),
  workload(ORDERS),
  workload(PAYMENTS),
  ca.issueServerCertificate(),
])
// The authorization server: the test issuer with a real token endpoint over https, client certificates verified.
const authServer = await startTestIssuer({
  tls: { certPem: authServerCert.certPem, keyPem: authServerCert.keyPem, clientCa: ca.certPem },
  tokenEndpoint: {
    clients: [
      { clientId: FRONTEND, auth: 'tls_client_auth', spiffeId: FRONTEND, scopes: ['orders:read', 'payments:read'] },
      { clientId: ORDERS, auth: 'tls_client_auth', spiffeId: ORDERS, scopes: ['payments:read'] },
    ],
  },
})
// The guards fetch the issuer's keys over https from a private CA.
const trustCa = new Agent({ connect: { ca: ca.certPem } })
const guardOptions = (audience, callers) => ({
  issuers: { issuer: authServer.issuer, audience },
  mtls: { mode: 'required', trustDomains: ['example.org'] },
  senderConstraint: 'required', // certificate-bound or DPoP-bound tokens only
  callers,
  fetch: (url, init) => undiciFetch(url, { ...init, dispatcher: trustCa }),
})
const tlsOf = (cert) => ({ cert: cert.certPem, key: cert.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false })
const identityOf = (cert) => ({ cert: cert.certPem, key: cert.keyPem, ca: ca.certPem }) // PEM here; { path } for files that rotate
const seen = (auth) => ({ caller: auth.caller.id, user: auth.user?.sub ?? null, binding: auth.binding, actors: auth.actors })
/** Call the next service for the user of `auth`; a ClientError is reported, not thrown. */
async function callNext(client, service, path, auth) {
  try {
    const response = await client.service(service).fetch(path, { onBehalfOf: auth })
    return { status: response.status, ...(await response.json()) }
  } catch (error) {
    if (!(error instanceof ClientError)) throw error
    const { name, code, status, problem, message } = error
    return { error: { name, code, status, refusal: problem?.code, detail: problem?.detail, side: problem?.side, message } }
  }
}
// Express knows an error handler by its four parameters.
const reportError = (err, req, res, _next) => res.status(502).json({ error: { name: err.name, code: err.code, message: err.message } })
const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `https://127.0.0.1:${server.address().port}`
}

// payments (Fastify): only orders may call it.
const paymentsApp = Fastify({ https: tlsOf(paymentsCert) })
await paymentsApp.register(callsignFastify, guardOptions(PAYMENTS_AUD, { [ORDERS]: ['payments:read'] }))
paymentsApp.get(
  '/payments',
  fastifyRequireAuth({ scopes: ['payments:read'], onBehalfOf: 'required' }, async (request) => ({ service: 'payments', saw: seen(request.auth) })),
)
await paymentsApp.listen({ port: 0, host: '127.0.0.1' })
const paymentsUrl = `https://127.0.0.1:${paymentsApp.server.address().port}`

// orders (Express): calls payments for the user, with tokens bound to its certificate (no dpop).
const ordersClient = createClient({
  issuer: authServer.issuer,
  clientId: ORDERS,
  auth: 'tls_client_auth',
  identity: identityOf(ordersCert),
  services: { payments: { url: paymentsUrl, resource: PAYMENTS_AUD, scopes: ['payments:read'], spiffeId: PAYMENTS } },
})
const ordersGuard = callsign(guardOptions(ORDERS_AUD, { [FRONTEND]: ['orders:read'] }))
const ordersApp = express().use(ordersGuard)
ordersApp.get('/orders', requireAuth({ scopes: ['orders:read'], onBehalfOf: 'required' }), async (req, res) => {
  res.json({ service: 'orders', saw: seen(req.auth), next: await callNext(ordersClient, 'payments', '/payments', req.auth) })
})
ordersApp.use(reportError)
const ordersServer = https.createServer(tlsOf(ordersCert), ordersApp)
const ordersUrl = await listen(ordersServer)

// frontend (Express): calls orders for the user, with DPoP-bound tokens; and, to show the refusals,
// payments directly (payments admits orders only), and "payments" at an address where orders answers.
const frontendOptions = {
  issuer: authServer.issuer,
  clientId: FRONTEND,
  auth: 'tls_client_auth',
  identity: identityOf(frontendCert),
  dpop: true, // a P-256 key made at start; tokens bound to it (cnf.jkt), a fresh proof per request
}
const frontendClient = createClient({
  ...frontendOptions,
  services: {
    // payments:read travels on: orders needs it for its own exchange, and an exchange only narrows.
    orders: { url: ordersUrl, resource: ORDERS_AUD, scopes: ['orders:read', 'payments:read'], spiffeId: ORDERS },
    payments: { url: paymentsUrl, resource: PAYMENTS_AUD, scopes: ['payments:read'], spiffeId: PAYMENTS },
  },
})
const misrouted = createClient({
  ...frontendOptions,
  services: { payments: { url: ordersUrl, resource: PAYMENTS_AUD, scopes: ['payments:read'], spiffeId: PAYMENTS } },
})
const frontendGuard = callsign(guardOptions(FRONTEND_AUD, { [GATEWAY]: ['orders:read', 'payments:read'] }))
const frontendApp = express().use(frontendGuard)
const frontendRoute = (path, client, service, nextPath) =>
  frontendApp.get(path, requireAuth({ onBehalfOf: 'required' }), async (req, res) => {
    res.json({ service: 'frontend', saw: seen(req.auth), next: await callNext(client, service, nextPath, req.auth) })
  })
frontendRoute('/checkout', frontendClient, 'orders', '/orders')
frontendRoute('/shortcut', frontendClient, 'payments', '/payments')
frontendRoute('/misrouted', misrouted, 'payments', '/payments')
frontendApp.use(reportError)
const frontendServer = https.createServer(tlsOf(frontendCert), frontendApp)
const frontendUrl = await listen(frontendServer)

// alice logs in at the gateway: her token for frontend, bound to the gateway's certificate.
const aliceLogin = await authServer.signAccessToken(
  { sub: 'alice', client_id: GATEWAY, scope: 'orders:read payments:read', ...boundTo(gatewayCert) },
  { audience: FRONTEND_AUD },
)
const BINDINGS = { mtls: 'cert-bound token', dpop: 'DPoP-bound token', bearer: 'bearer token' }
/** What one service saw: caller, user, binding and the act chain (nearest actor first). */
const sawText = ({ caller, user, binding, actors }) =>
  `caller ${short(caller)}, user ${user ?? 'none'}, ${BINDINGS[binding] ?? binding}, act: ${
    actors.length === 0 ? `none (${user}'s own token)` : `${user} via ${actors.map(short).join(' <- ')}`
  }`
const refusalText = ({ name, code, detail, side, message }) =>
  name === 'ServiceRefusedError' ? `${name} (${code}): ${detail}${side ? ` (${side} side)` : ''}` : `${name}: ${message}; no request sent`
const frontendAt = new URL(frontendUrl).port
const chainRows = []
let chainUnexpected = 0
/** One row: a hop's outcome (`hop` is the response of a service, or its `{ error }`), checked against `expect`. */
function hopRow(what, hop, expect) {
  const allowed = hop !== undefined && hop.error === undefined && hop.status < 400
  const status = hop?.status ?? hop?.error?.status
  const code = allowed ? undefined : (hop?.error?.refusal ?? hop?.error?.code ?? 'missing')
  const reason = allowed ? sawText(hop.saw) : hop?.error ? refusalText(hop.error) : 'no answer'
  const [expectedStatus, expectedCode] = expect
  const ok = status === expectedStatus && code === expectedCode
  if (!ok) chainUnexpected++
  chainRows.push([
    String(rows.length + chainRows.length + 1),
    what,
    status === undefined ? '---' : String(status),
    allowed ? 'allowed' : 'refused',
    code ?? '-',
    ok ? reason : `${reason}  <-- UNEXPECTED, wanted ${expectedStatus ?? '---'}${expectedCode ? ` ${expectedCode}` : ''}`,
  ])
}
/** The gateway's call to frontend, for alice: the answer, as the JSON frontend sent. */
async function fromGateway(path) {
  const { status, text } = await request({ cert: gatewayCert, token: aliceLogin, path, to: frontendAt })
  try {
    return { status, ...JSON.parse(text) }
  } catch {
    return { status, error: { name: 'Error', code: 'not_json', message: text.slice(0, 200) } }
  }
}
try {
  const checkout = await fromGateway('/checkout')
  hopRow("gateway -> frontend: GET /checkout, alice's login", checkout, [200])
  hopRow('frontend -> orders: GET /orders, for alice', checkout.next, [200])
  hopRow('orders -> payments: GET /payments, for alice', checkout.next?.next, [200])
  hopRow('frontend -> payments directly, for alice', (await fromGateway('/shortcut')).next, [403, 'caller_forbidden'])
  hopRow('frontend -> "payments" where orders answers', (await fromGateway('/misrouted')).next, [undefined, 'server_identity_mismatch'])
} finally {
  await Promise.all([frontendClient.close(), misrouted.close(), ordersClient.close()])
  for (const server of [ordersServer, frontendServer]) {
    server.close()
    server.closeAllConnections()
  }
  await Promise.all([paymentsApp.close(), frontendGuard.guard.close(), ordersGuard.guard.close(), trustCa.close()])
}
const exchanges = authServer.tokenRequests.filter((r) => r.grantType === 'urn:ietf:params:oauth:grant-type:token-exchange' && r.status === 200)
await authServer.close()

console.log(`
Both ends of a call: gateway -> frontend -> orders -> payments, each service protected by Callsign (Express, Fastify)
  and calling the next with @callsign/client: fetch('/orders', { onBehalfOf: req.auth }) exchanges the token the
  request presented (RFC 8693) at ${authServer.issuer}/token, where the workload certificate authenticates the
  client (tls_client_auth), then calls over mTLS after checking the server's SPIFFE ID (spiffeId).
  frontend's tokens are DPoP-bound (a fresh proof per request); orders' are bound to its certificate (RFC 8705).
`)
printTable(chainRows)
console.log(
  chainUnexpected === 0
    ? `${chainRows.length} hops, every decision as expected (${tally(chainRows)}); ${exchanges.length} token exchanges, each over mTLS.`
    : `${chainUnexpected} of ${chainRows.length} hops did not get the expected decision.`,
)
console.log('Next: docs/client.md (the calling side), examples/express, examples/fastify, examples/koa and README.md.')
process.exitCode = unexpected === 0 && chainUnexpected === 0 ? 0 : 1

// A user's first protected service, run by scripts/check-install.mjs inside an empty npm project
// that installed the packages from their tarballs: every import below resolves from that
// project's node_modules, as it would for a user. For each adapter named on the command line it
// serves GET /orders over mTLS (throwaway CA and loopback issuer from @callsign/testing), then
// makes one call that must be accepted and one that must be refused.
//   node install-smoke.mjs express [fastify koa node] [--explain] [--client]
// `--client` also calls the Express service with @callsign/client (a real token endpoint, DPoP).
// `--explain` also runs the `callsign` bin (`npx --no callsign explain ...`) on the accepted call.
// Prints one line per check and exits 1 if any failed.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createTestCa, startTestIssuer } from '@callsign/testing'

const AUDIENCE = 'https://orders.example'
const FRONTEND = 'spiffe://example.org/ns/web/sa/frontend'
const RULE = { scopes: ['orders:read'] }
const STEP_TIMEOUT_MS = 20_000 // only so that a broken install fails instead of hanging

const contextOf = (auth) => ({ caller: auth.caller.id, user: auth.user?.sub ?? null })

const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Each adapter as its README shows it: the guard on every request, `requireAuth` on the route. */
const ADAPTERS = {
  async express(tls, options) {
    const { default: express } = await import('express')
    const { callsign, requireAuth } = await import('@callsign/express')
    const app = express()
    app.use(callsign(options))
    app.get('/orders', requireAuth(RULE), (req, res) => res.json(contextOf(req.auth)))
    return listen(https.createServer(tls, app))
  },
  async fastify(tls, options) {
    const { default: Fastify } = await import('fastify')
    const { default: callsign, requireAuth } = await import('@callsign/fastify')
    const app = Fastify({ https: tls })
    await app.register(callsign, options)
    app.get('/orders', { preHandler: requireAuth(RULE) }, async (request) => contextOf(request.auth))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { port: app.server.address().port, close: () => app.close() }
  },
  async koa(tls, options) {
    const { default: Koa } = await import('koa')
    const { callsign, requireAuth } = await import('@callsign/koa')
    const app = new Koa()
    const canRead = requireAuth(RULE)
    app.use(callsign(options))
    app.use((ctx, next) => {
      if (ctx.path !== '/orders') return next()
      return canRead(ctx, async () => {
        ctx.body = contextOf(ctx.state.auth)
      })
    })
    return listen(https.createServer(tls, app.callback()))
  },
  async node(tls, options) {
    const { callsign, requireAuth } = await import('@callsign/node')
    const authenticate = callsign(options)
    const canRead = requireAuth(RULE)
    return listen(
      https.createServer(tls, async (req, res) => {
        if (!(await authenticate(req, res)) || !canRead(req, res)) return
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(contextOf(req.auth)))
      }),
    )
  },
}

/** GET over HTTPS with a client certificate; resolves `{ status, type, challenge, body }`. */
function get(port, { ca, client, token }) {
  return new Promise((resolve, reject) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/orders',
        agent: false,
        ca,
        cert: client.certPem,
        key: client.keyPem,
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk) => (text += chunk))
        res.on('error', reject)
        res.on('end', () => {
          let body
          try {
            body = JSON.parse(text)
          } catch {
            body = text
          }
          const type = String(res.headers['content-type'] ?? '')
          resolve({ status: res.statusCode, type, challenge: res.headers['www-authenticate'], body })
        })
      },
    )
    request.on('error', reject)
  })
}

/** One accepted and one refused call through `adapter`; returns the failures (empty when all held). */
async function checkAdapter(adapter, setup) {
  const server = await ADAPTERS[adapter](setup.tls, setup.options)
  try {
    const accepted = await get(server.port, { ...setup, token: setup.goodToken })
    const refused = await get(server.port, { ...setup, token: setup.expiredToken })
    const failures = []
    if (accepted.status !== 200 || accepted.body?.caller !== FRONTEND || accepted.body?.user !== 'alice') {
      failures.push(`accepted call: expected 200 with caller frontend and user alice, got ${accepted.status} ${JSON.stringify(accepted.body)}`)
    }
    const problem = refused.type.startsWith('application/problem+json') && refused.body?.code === 'invalid_token'
    if (refused.status !== 401 || !problem || !refused.challenge?.startsWith('Bearer')) {
      failures.push(
        `refused call: expected 401 problem+json invalid_token with a Bearer challenge, got ${refused.status} ${refused.type} ${JSON.stringify(refused.body)}`,
      )
    }
    const summary = `200 ${JSON.stringify(accepted.body)}; 401 ${refused.body?.code}`
    return { failures, summary }
  } finally {
    await server.close()
  }
}

/** `npx --no callsign explain` on the accepted call: the bin must be installed and say ALLOWED. */
async function checkExplain(setup) {
  const dir = await mkdtemp(join(process.cwd(), 'explain-'))
  try {
    const file = (name, content) => writeFile(join(dir, name), content).then(() => join(dir, name))
    const args = [
      '--no',
      'callsign',
      'explain',
      '--options',
      await file('guard.json', JSON.stringify(setup.options)),
      '--token',
      `@${await file('token.jwt', setup.goodToken)}`,
      '--cert',
      await file('client.pem', setup.client.certPem),
      '--ca',
      await file('ca.pem', setup.ca),
      '--url',
      `${AUDIENCE}/orders`,
      '--rule',
      JSON.stringify(RULE),
    ]
    const run = promisify(execFile)
    const { stdout } = await run('npx', args, { timeout: STEP_TIMEOUT_MS, encoding: 'utf8' }).catch((error) => error)
    const ok = /^ALLOWED$/m.test(stdout ?? '')
    return { failures: ok ? [] : [`expected ALLOWED, got:\n${stdout}`], summary: 'npx --no callsign explain: ALLOWED' }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** `@callsign/client` calls the Express service: tls_client_auth at a real token endpoint, a DPoP-bound token, the server's SPIFFE ID unchecked (it has none). */
async function checkClient(setup) {
  const { createClient } = await import('@callsign/client')
  const issuer = await startTestIssuer({
    tls: { certPem: setup.server.certPem, keyPem: setup.server.keyPem, clientCa: setup.ca },
    tokenEndpoint: { clients: [{ clientId: FRONTEND, auth: 'tls_client_auth', scopes: ['orders:read'] }] },
  })
  // The issuer is behind the test CA: the guard fetches its metadata and keys trusting that CA (README: "Private CA").
  const fetchTrusting = (url, init = {}) =>
    new Promise((resolve, reject) => {
      const request = https.get(url, { ca: setup.ca, signal: init.signal, headers: init.headers }, (res) => {
        const chunks = []
        res.on('data', (chunk) => chunks.push(chunk))
        res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: res.headers })))
      })
      request.on('error', reject)
    })
  const options = { ...setup.options, issuers: { issuer: issuer.issuer, audience: AUDIENCE }, fetch: fetchTrusting }
  const server = await ADAPTERS.express(setup.tls, options)
  const client = createClient({
    issuer: issuer.issuer,
    clientId: FRONTEND,
    auth: 'tls_client_auth',
    identity: { cert: setup.client.certPem, key: setup.client.keyPem, ca: setup.ca },
    dpop: true,
    services: { orders: { url: `https://127.0.0.1:${server.port}`, resource: AUDIENCE, scopes: ['orders:read'] } },
  })
  try {
    const response = await client.service('orders').fetch('/orders', { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) })
    const body = await response.json()
    const ok = response.status === 200 && body?.caller === FRONTEND
    return { failures: ok ? [] : [`expected 200 with caller frontend, got ${response.status} ${JSON.stringify(body)}`], summary: `200 ${JSON.stringify(body)}` }
  } finally {
    await client.close()
    await server.close()
    await issuer.close()
  }
}

async function main(argv) {
  const adapters = argv.filter((arg) => arg !== '--explain' && arg !== '--client')
  const unknown = adapters.filter((adapter) => !(adapter in ADAPTERS))
  if (adapters.length === 0 || unknown.length > 0) {
    console.error(`usage: node install-smoke.mjs ${Object.keys(ADAPTERS).join('|')}... [--explain]`)
    return 2
  }
  const ca = await createTestCa()
  const server = await ca.issueServerCertificate()
  const client = await ca.issueCertificate({ spiffeId: FRONTEND })
  const issuer = await startTestIssuer()
  const claims = { sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read', cnf: { 'x5t#S256': client.x5tS256 } }
  const setup = {
    ca: ca.certPem,
    client,
    server,
    tls: { cert: server.certPem, key: server.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false },
    options: {
      issuers: { issuer: issuer.issuer, audience: AUDIENCE },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: { [FRONTEND]: ['orders:read'] },
    },
    goodToken: await issuer.signAccessToken(claims, { audience: AUDIENCE }),
    expiredToken: await issuer.signAccessToken(claims, { audience: AUDIENCE, expiresInSeconds: -600 }),
  }
  const checks = adapters.map((adapter) => [adapter, () => checkAdapter(adapter, setup)])
  if (argv.includes('--explain')) checks.push(['callsign bin', () => checkExplain(setup)])
  if (argv.includes('--client')) checks.push(['@callsign/client', () => checkClient(setup)])
  let failed = 0
  try {
    for (const [name, check] of checks) {
      const { failures, summary } = await check().catch((error) => ({ failures: [String(error?.stack ?? error)] }))
      if (failures.length > 0) failed++
      console.log(failures.length === 0 ? `  ok    ${name}: ${summary}` : `  FAIL  ${name}: ${failures.join('\n        ')}`)
    }
  } finally {
    await issuer.close()
  }
  return failed === 0 ? 0 : 1
}

process.exitCode = await main(process.argv.slice(2))

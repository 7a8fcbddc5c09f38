// Configuration shared by the Express, Fastify and Koa examples.
//
// Production-style: environment variables
//   ISSUER     exact `iss` of your authorization server, e.g. https://auth.example.com/
//   AUDIENCE   this service's identifier, e.g. https://orders.example
//   JWKS_URI   optional; discovered from the issuer metadata (RFC 8414, then OpenID) when absent
//   TLS_CERT   path of the server certificate (PEM, chain allowed)
//   TLS_KEY    path of its private key (PEM)
//   TLS_CA     path of the CA bundle client certificates must chain to (e.g. your SPIFFE trust bundle)
//   PORT       default 8443;  HOST  default 0.0.0.0
//
// `--dev`: no setup at all. A throwaway CA, server and client certificates, and a local token
// issuer are made with @callsign/testing (never use it in production), and ready-to-paste `curl`
// commands are printed.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const FRONTEND = 'spiffe://example.org/ns/web/sa/frontend'
export const REPORT = 'spiffe://example.org/ns/batch/sa/report'

/**
 * TLS options for an https server that asks every client for a certificate. `rejectUnauthorized:
 * false` lets the handshake finish so Callsign can refuse a bad certificate with a precise 401
 * (`mtls: 'required'` refuses a missing one); `ca` pins the CA that client certificates must
 * chain to — only those count as authorized.
 */
export const mtlsServerOptions = ({ cert, key, ca }) => ({ cert, key, ca, requestCert: true, rejectUnauthorized: false })

/**
 * Resolve the example's configuration from `argv` and `env`. Returns `{ issuer, audience,
 * jwksUri?, tls: { cert, key, ca }, port, host, dev? }`; `dev` (only with `--dev`) has
 * `printInstructions(port)` and `close()`.
 */
export async function loadConfig({ name, argv = process.argv.slice(2), env = process.env }) {
  if (argv.includes('--dev')) return devConfig({ name, port: env.PORT === undefined ? 8443 : Number(env.PORT) })
  const required = ['ISSUER', 'AUDIENCE', 'TLS_CERT', 'TLS_KEY', 'TLS_CA']
  const missing = required.filter((variable) => !env[variable])
  if (missing.length > 0) {
    console.error(`${name}: missing environment variable(s) ${missing.join(', ')}.`)
    console.error(`Set ${required.join(', ')} (and optionally JWKS_URI, PORT, HOST), or run with --dev for a throwaway local setup.`)
    process.exit(1)
  }
  const [cert, key, ca] = await Promise.all([env.TLS_CERT, env.TLS_KEY, env.TLS_CA].map((path) => readFile(path, 'utf8')))
  return {
    issuer: env.ISSUER,
    audience: env.AUDIENCE.split(/[\s,]+/).filter(Boolean),
    ...(env.JWKS_URI ? { jwksUri: env.JWKS_URI } : {}),
    tls: { cert, key, ca },
    port: Number(env.PORT ?? 8443),
    host: env.HOST ?? '0.0.0.0',
  }
}

async function devConfig({ name, port }) {
  const { createTestCa, startTestIssuer } = await import('@callsign/testing')
  const audience = 'https://orders.example'
  const ca = await createTestCa({ commonName: `${name} dev CA` })
  const server = await ca.issueServerCertificate()
  const frontend = await ca.issueCertificate({ spiffeId: FRONTEND })
  const report = await ca.issueCertificate({ spiffeId: REPORT })
  const issuer = await startTestIssuer()
  const hour = { audience, expiresInSeconds: 3600 }
  // Alice's token, exchanged for the frontend (RFC 8693 `act`) and bound to its certificate (RFC 8705).
  const aliceViaFrontend = await issuer.signAccessToken(
    { sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read orders:write', cnf: { 'x5t#S256': frontend.x5tS256 } },
    hour,
  )
  // The report job's own token (client credentials), bound to its certificate.
  const reportService = await issuer.signAccessToken({ sub: REPORT, client_id: REPORT, scope: 'orders:read', cnf: { 'x5t#S256': report.x5tS256 } }, hour)
  const dir = await mkdtemp(join(tmpdir(), 'callsign-dev-'))
  const files = {
    'ca.pem': ca.certPem,
    'frontend.pem': frontend.certPem,
    'frontend-key.pem': frontend.keyPem,
    'report.pem': report.certPem,
    'report-key.pem': report.keyPem,
    'alice-via-frontend.jwt': aliceViaFrontend,
    'report.jwt': reportService,
  }
  await Promise.all(Object.entries(files).map(([file, content]) => writeFile(join(dir, file), content, { mode: 0o600 })))
  const path = (file) => join(dir, file)
  return {
    issuer: issuer.issuer,
    audience,
    tls: { cert: server.certPem, key: server.keyPem, ca: ca.certPem },
    port,
    host: '127.0.0.1',
    dev: {
      printInstructions(listeningPort) {
        const base = `https://127.0.0.1:${listeningPort}`
        const curl = (who, token, rest) =>
          `curl --cacert ${path('ca.pem')} --cert ${path(`${who}.pem`)} --key ${path(`${who}-key.pem`)} -H "Authorization: Bearer $(cat ${path(token)})" ${rest}`
        console.log(`
${name} (dev mode) listening on ${base}
  throwaway CA, certificates and tokens in ${dir}
  local issuer ${issuer.issuer} (RFC 8414 metadata + JWKS); tokens valid for an hour

# frontend, on behalf of alice: allowed (200)
${curl('frontend', 'alice-via-frontend.jwt', `${base}/orders`)}
# frontend, on behalf of alice: allowed (201)
${curl('frontend', 'alice-via-frontend.jwt', `-X POST ${base}/orders`)}
# frontend on the batch-only route: refused (403 caller_forbidden)
${curl('frontend', 'alice-via-frontend.jwt', `${base}/reports/daily`)}
# the report job, for itself: allowed (200)
${curl('report', 'report.jwt', `${base}/reports/daily`)}
# no client certificate: refused (401)
curl --cacert ${path('ca.pem')} -H "Authorization: Bearer $(cat ${path('alice-via-frontend.jwt')})" ${base}/orders

Ctrl-C to stop.`)
      },
      async close() {
        await issuer.close()
        await rm(dir, { recursive: true, force: true })
      },
    },
  }
}

/** Close the server (and the dev issuer) on SIGINT/SIGTERM. */
export function closeOnSignals(close) {
  const stop = () => {
    close().then(
      () => process.exit(0),
      (error) => {
        console.error(error)
        process.exit(1)
      },
    )
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

/**
 * A small but real RFC 7662 authorization server on loopback: it issues opaque random tokens,
 * remembers their claims, and answers `POST /introspect` (form-encoded `token`, the resource
 * server authenticated with `client_secret_basic`) with `{ active, scope, client_id, sub, aud,
 * iss, exp, iat, act, cnf, token_type, jti }` (§2.2), or `{ active: false }` for tokens it did
 * not issue, revoked or expired ones. Faults on demand: 500, a hang, a non-JSON body, a delay.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface IssuedClaims {
  scope?: string
  client_id?: string
  sub?: string
  aud?: string | string[]
  act?: Record<string, unknown>
  cnf?: Record<string, unknown>
  token_type?: string
  /** Overrides the server's issuer in the answer (a foreign issuer). */
  iss?: string
  [claim: string]: unknown
}

export type IntrospectionFault = 'none' | 'error' | 'hang' | 'garbage' | 'not-rfc7662'

export interface IntrospectionServer {
  /** `http://127.0.0.1:<port>/introspect` */
  endpoint: string
  issuer: string
  clientId: string
  clientSecret: string
  /** Introspection requests received (authenticated or not). */
  requests: number
  /** Requests refused for bad client authentication. */
  unauthenticated: number
  /** Tokens seen in requests, for assertions on the form body. */
  lastForm: URLSearchParams | undefined
  fault: IntrospectionFault
  /** Delay every answer by this many ms (single-flight tests). */
  delayMs: number
  /** Issue an opaque token valid for `lifetimeSeconds` (default 300; negative: already expired). */
  issue(claims?: IssuedClaims, lifetimeSeconds?: number): string
  /** Make a token inactive. */
  revoke(token: string): void
  close(): Promise<void>
}

export interface IntrospectionServerOptions {
  issuer: string
  clientId?: string
  clientSecret?: string
  /** Default audience of issued tokens. */
  audience?: string
}

export async function startIntrospectionServer(options: IntrospectionServerOptions): Promise<IntrospectionServer> {
  const tokens = new Map<string, { claims: IssuedClaims; iat: number; exp: number; jti: string }>()
  const clientId = options.clientId ?? 'orders-api'
  const clientSecret = options.clientSecret ?? randomBytes(16).toString('hex')
  const expected = Buffer.from(`Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`)
  const hanging = new Set<ServerResponse>()

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    if (req.method !== 'POST' || req.url !== '/introspect') {
      res.writeHead(404).end()
      return
    }
    server.requests++
    const given = Buffer.from(req.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      server.unauthenticated++
      res.writeHead(401, { 'www-authenticate': 'Basic realm="introspection"', 'content-type': 'application/json' }).end('{"error":"invalid_client"}')
      return
    }
    if (!/^application\/x-www-form-urlencoded\b/.test(req.headers['content-type'] ?? '')) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
      return
    }
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
    server.lastForm = form
    if (server.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, server.delayMs))
    switch (server.fault) {
      case 'error':
        res.writeHead(500).end('down')
        return
      case 'hang':
        hanging.add(res)
        return
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json')
        return
      case 'not-rfc7662':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"valid":true}')
        return
    }
    const token = form.get('token')
    if (!token) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
      return
    }
    const entry = tokens.get(token)
    const now = Math.floor(Date.now() / 1000)
    let body: Record<string, unknown> = { active: false }
    if (entry && entry.exp > now) {
      const { iss, ...claims } = entry.claims
      body = {
        active: true,
        token_type: 'Bearer',
        aud: options.audience,
        ...claims,
        iss: iss ?? options.issuer,
        iat: entry.iat,
        exp: entry.exp,
        jti: entry.jti,
      }
      for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
  }

  const http = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy())
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as AddressInfo).port

  const server: IntrospectionServer = {
    endpoint: `http://127.0.0.1:${port}/introspect`,
    issuer: options.issuer,
    clientId,
    clientSecret,
    requests: 0,
    unauthenticated: 0,
    lastForm: undefined,
    fault: 'none',
    delayMs: 0,
    issue(claims = {}, lifetimeSeconds = 300) {
      const token = randomBytes(32).toString('base64url')
      const iat = Math.floor(Date.now() / 1000)
      tokens.set(token, { claims, iat, exp: iat + lifetimeSeconds, jti: randomBytes(8).toString('hex') })
      return token
    },
    revoke(token) {
      tokens.delete(token)
    },
    close() {
      for (const res of hanging) res.destroy()
      return new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      })
    },
  }
  return server
}

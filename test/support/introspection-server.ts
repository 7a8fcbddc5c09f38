/**
 * A small but real RFC 7662 authorization server on loopback: it issues opaque random tokens,
 * remembers their claims, and answers `POST /introspect` (form-encoded `token`, the resource
 * server authenticated with `client_secret_basic`) with `{ active, scope, client_id, sub, aud,
 * iss, exp, iat, act, cnf, token_type, jti }` (§2.2), or `{ active: false }` for tokens it did
 * not issue, revoked or expired ones. Faults on demand: 500, a hang, a non-JSON body, a delay.
 * Optionally: RFC 8414 metadata (`GET /.well-known/oauth-authorization-server`, with
 * `introspection_endpoint`), `private_key_jwt` client authentication (RFC 7523 §2.2, verified with
 * the client's public key, `jti` replay refused) and RFC 9701 signed answers (`application/token-introspection+jwt`
 * when asked by `Accept`, keys at `GET /jwks`), and RFC 8705 `tls_client_auth` over HTTPS: the
 * resource server's certificate must chain to the given CA and carry the expected SPIFFE ID, with
 * `client_id` in the form; metadata then lists the endpoint under `mtls_endpoint_aliases` (§5).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWTHeaderParameters } from 'jose'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { TLSSocket } from 'node:tls'
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
  /** `http://127.0.0.1:<port>` */
  origin: string
  /** `http://127.0.0.1:<port>/jwks` (the keys of signed answers, with `signAnswers`). */
  jwksUri: string
  /** Metadata documents served; `metadata` overrides the document (`null`: 404). */
  metadataRequests: number
  metadata: Record<string, unknown> | null | undefined
  /** With `signAnswers`: overrides of the header and claims of signed answers (tampering tests). */
  jwtHeader: Partial<JWTHeaderParameters>
  jwtClaims: Record<string, unknown>
  /** With `signAnswers`: sign with a key that is not published. */
  jwtForeignKey: boolean
  /** With `signAnswers`: rewrite the signed answer before it is sent (e.g. another spelling of a segment). */
  jwtTransform: ((jwt: string) => string) | undefined
  /** Signed answers sent. */
  jwtAnswers: number
  /** Issue an opaque token valid for `lifetimeSeconds` (default 300; negative: already expired). */
  issue(claims?: IssuedClaims, lifetimeSeconds?: number): string
  /** Make a token inactive. */
  revoke(token: string): void
  close(): Promise<void>
}

export interface IntrospectionServerOptions {
  /** Default: the server's own origin (`http://127.0.0.1:<port>`), so metadata discovery works. */
  issuer?: string
  clientId?: string
  clientSecret?: string
  /** Default audience of issued tokens. */
  audience?: string
  /** Require `private_key_jwt` (RFC 7523 §2.2) verified with this public key instead of `client_secret_basic`. */
  clientPublicKey?: Parameters<typeof jwtVerify>[1]
  /** Answer with an RFC 9701 signed JWT (ES256, key at `/jwks`) when the request accepts `application/token-introspection+jwt`. */
  signAnswers?: boolean
  /**
   * Serve HTTPS with this certificate and require RFC 8705 `tls_client_auth` at `POST /mtls/introspect`
   * (the `mtls_endpoint_aliases.introspection_endpoint` of the metadata; `POST /introspect` then
   * refuses every client): a client certificate that chains to `clientCa`, whose URI SAN is
   * `clientSpiffeId`, and `client_id` in the form.
   */
  tlsClientAuth?: { key: string; cert: string; clientCa: string; clientSpiffeId: string }
}

export async function startIntrospectionServer(options: IntrospectionServerOptions): Promise<IntrospectionServer> {
  const tokens = new Map<string, { claims: IssuedClaims; iat: number; exp: number; jti: string }>()
  const clientId = options.clientId ?? 'orders-api'
  const clientSecret = options.clientSecret ?? randomBytes(16).toString('hex')
  const expected = Buffer.from(`Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`)
  const hanging = new Set<ServerResponse>()
  const signing = options.signAnswers ? await generateKeyPair('ES256') : undefined
  const foreign = options.signAnswers ? await generateKeyPair('ES256') : undefined
  const publicJwk = signing ? { ...(await exportJWK(signing.publicKey)), kid: 'answers-1', alg: 'ES256', use: 'sig' } : undefined
  const seenJti = new Set<string>()

  /** RFC 7523 §2.2 / §3: the assertion's signature, iss = sub = client id, aud = endpoint or issuer, exp, unique jti. */
  const assertionOk = async (form: URLSearchParams): Promise<boolean> => {
    if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return false
    const assertion = form.get('client_assertion')
    if (!assertion || form.has('client_secret')) return false
    try {
      const { payload } = await jwtVerify(assertion, options.clientPublicKey!, {
        issuer: clientId,
        subject: clientId,
        audience: [server.endpoint, server.issuer],
        requiredClaims: ['exp', 'jti'],
        maxTokenAge: '5m',
      })
      if (seenJti.has(payload.jti!)) return false
      seenJti.add(payload.jti!)
      return true
    } catch {
      return false
    }
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    if (req.method === 'GET' && (req.url === '/.well-known/oauth-authorization-server' || req.url === '/jwks')) {
      if (req.url === '/jwks') {
        if (!publicJwk) res.writeHead(404).end()
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }))
        return
      }
      server.metadataRequests++
      const metadata =
        server.metadata !== undefined
          ? server.metadata
          : {
              issuer: server.issuer,
              introspection_endpoint: server.endpoint,
              ...(options.tlsClientAuth ? { mtls_endpoint_aliases: { introspection_endpoint: `${server.origin}/mtls/introspect` } } : {}),
            }
      if (metadata === null) res.writeHead(404).end()
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(metadata))
      return
    }
    const mtlsPath = options.tlsClientAuth !== undefined && req.url === '/mtls/introspect'
    if (req.method !== 'POST' || (req.url !== '/introspect' && !mtlsPath)) {
      res.writeHead(404).end()
      return
    }
    server.requests++
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
    let authenticated: boolean
    if (options.tlsClientAuth) {
      // RFC 8705 §2.1.2: the certificate's SAN identifies the client; no other credentials.
      const socket = req.socket as TLSSocket
      const peer = socket.authorized ? socket.getPeerCertificate() : undefined
      const sans = peer?.subjectaltname?.split(', ') ?? []
      authenticated =
        mtlsPath &&
        peer !== undefined &&
        sans.includes(`URI:${options.tlsClientAuth.clientSpiffeId}`) &&
        form.get('client_id') === clientId &&
        req.headers.authorization === undefined &&
        !form.has('client_secret') &&
        !form.has('client_assertion')
    } else if (options.clientPublicKey) {
      authenticated = req.headers.authorization === undefined && (await assertionOk(form))
    } else {
      const given = Buffer.from(req.headers.authorization ?? '')
      authenticated = given.length === expected.length && timingSafeEqual(given, expected)
    }
    if (!authenticated) {
      server.unauthenticated++
      res.writeHead(401, { 'www-authenticate': 'Basic realm="introspection"', 'content-type': 'application/json' }).end('{"error":"invalid_client"}')
      return
    }
    if (!/^application\/x-www-form-urlencoded\b/.test(req.headers['content-type'] ?? '')) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}')
      return
    }
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
        iss: iss ?? server.issuer,
        iat: entry.iat,
        exp: entry.exp,
        jti: entry.jti,
      }
      for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
    }
    if (signing && (req.headers.accept ?? '').includes('application/token-introspection+jwt')) {
      // RFC 9701 §5: iss = the AS, aud = the resource server's client id, iat, the answer in token_introspection.
      const jwt = await new SignJWT({ token_introspection: body, ...server.jwtClaims })
        .setProtectedHeader({ alg: 'ES256', kid: 'answers-1', typ: 'token-introspection+jwt', ...server.jwtHeader } as JWTHeaderParameters)
        .setIssuer((server.jwtClaims.iss as string | undefined) ?? server.issuer)
        .setAudience((server.jwtClaims.aud as string | undefined) ?? clientId)
        .setIssuedAt()
        .sign(server.jwtForeignKey ? foreign!.privateKey : signing.privateKey)
      server.jwtAnswers++
      res
        .writeHead(200, { 'content-type': 'application/token-introspection+jwt', 'cache-control': 'no-store' })
        .end(server.jwtTransform ? server.jwtTransform(jwt) : jwt)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch(() => res.destroy())
  }
  const tls = options.tlsClientAuth
  const http = tls
    ? createHttpsServer({ key: tls.key, cert: tls.cert, ca: tls.clientCa, requestCert: true, rejectUnauthorized: false }, listener)
    : createServer(listener)
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as AddressInfo).port

  const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const server: IntrospectionServer = {
    endpoint: `${origin}/introspect`,
    issuer: options.issuer ?? origin,
    origin,
    jwksUri: `${origin}/jwks`,
    metadataRequests: 0,
    metadata: undefined,
    jwtHeader: {},
    jwtClaims: {},
    jwtForeignKey: false,
    jwtTransform: undefined,
    jwtAnswers: 0,
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

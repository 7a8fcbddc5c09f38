import type { IncomingMessage, ServerResponse } from 'node:http'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { IssuerKeyRing } from './issuer-keys.js'
import { signAccessToken } from './sign-access-token.js'
import { AssertionLedger, authenticateClient } from './token-client-auth.js'
import { clientCertificate, type ClientCertificate } from './token-client-certificate.js'
import { TokenDpop } from './token-dpop.js'
import type { ResolvedClient, ResolvedTokenEndpoint } from './token-endpoint-options.js'
import { TokenError } from './token-error.js'

/** RFC 6749 §4.4. */
export const CLIENT_CREDENTIALS = 'client_credentials'
/** RFC 8693 §2.1. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
/** RFC 6749 §3.3: scope-token = 1*NQCHAR. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/
/** Parameters that may be sent more than once (RFC 8707 §2, RFC 8693 §2.1); every other one only once (RFC 6749 §3.2). */
const REPEATABLE = new Set(['resource', 'audience'])
/** Largest accepted request body; a token request is a few kilobytes. */
export const MAX_TOKEN_BODY_BYTES = 64 * 1024

/**
 * One token request received by a {@link TestIssuer}'s token endpoint.
 *
 * @example
 * ```ts
 * expect(issuer.tokenRequests.filter((r) => r.grantType === 'client_credentials')).toHaveLength(1);
 * ```
 */
export interface TokenRequestRecord {
  /** The `grant_type` sent, if any. */
  grantType: string | undefined
  /** The authenticated client, when authentication succeeded. */
  clientId: string | undefined
  /** HTTP status of the answer. */
  status: number
  /** The RFC 6749 §5.2 `error` code of a refusal. */
  error?: string
}

/** What the token endpoint needs from the issuer around it. @internal */
export interface TokenEndpointContext {
  options: ResolvedTokenEndpoint
  keys: IssuerKeyRing
  issuer: () => string
  endpoint: () => string
  records: TokenRequestRecord[]
}

/** The sender constraint a token is issued with. */
interface Binding {
  tokenType: 'DPoP' | 'Bearer'
  dpopJkt?: string
  x5tS256?: string
}

/** One access token to issue: its claims, lifetime bound, audience, binding and scopes, and extra answer members. */
interface Issuance {
  claims: Record<string, unknown>
  /** The subject token's `exp`: the issued token never outlives it. */
  notAfter: number | undefined
  audience: string | string[] | undefined
  binding: Binding
  scopes: string[]
  /** Members of the answer besides the token's own (e.g. `issued_token_type`). */
  extra: Record<string, unknown>
}

/**
 * A real OAuth token endpoint (client credentials, RFC 8693 token exchange, DPoP and
 * certificate-bound tokens) for a test issuer.
 *
 * @internal
 */
export class TokenEndpoint {
  readonly #assertions = new AssertionLedger()
  #dpop: TokenDpop | undefined

  constructor(private readonly context: TokenEndpointContext) {}

  /** The DPoP side, made once the endpoint URL is known (after the server listens). */
  get dpop(): TokenDpop {
    this.#dpop ??= new TokenDpop(this.context.endpoint(), this.context.options.requireDpopNonce)
    return this.#dpop
  }

  /**
   * Answers one token request (the body already read) with RFC 6749 §5.1 JSON or a §5.2 error.
   * `cache-control: no-store` on every answer.
   */
  async handle(req: IncomingMessage, res: ServerResponse, body: Promise<Buffer | undefined>): Promise<void> {
    const record: TokenRequestRecord = { grantType: undefined, clientId: undefined, status: 200 }
    this.context.records.push(record)
    let status = 200
    let document: Record<string, unknown>
    let headers: Record<string, string> = {}
    try {
      document = await this.#answer(req, await body, record)
    } catch (error) {
      const refusal = error instanceof TokenError ? error : new TokenError(500, 'server_error', 'unexpected error')
      status = refusal.status
      headers = refusal.headers
      document = { error: refusal.error, error_description: refusal.description }
      record.error = refusal.error
    }
    record.status = status
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache', ...this.dpop.headers(), ...headers })
    res.end(JSON.stringify(document))
  }

  async #answer(req: IncomingMessage, body: Buffer | undefined, record: TokenRequestRecord): Promise<Record<string, unknown>> {
    if (req.method !== 'POST') throw new TokenError(405, 'invalid_request', 'the token endpoint takes POST', { allow: 'POST' })
    const form = readForm(req, body)
    const grantType = form.get('grant_type') ?? undefined
    record.grantType = grantType
    if (grantType === undefined) throw new TokenError(400, 'invalid_request', 'grant_type is missing')
    // The proof first: a nonce miss must not use up the client's one-time assertion.
    const dpopJkt = await this.dpop.check(req.headersDistinct['dpop'])
    const certificate = clientCertificate(req.socket)
    const client = await authenticateClient(
      {
        form,
        authorization: req.headersDistinct['authorization'] ?? [],
        certificate,
        clients: this.context.options.clients,
        audiences: [this.context.issuer(), this.context.endpoint()],
        issuer: this.context.issuer(),
      },
      this.#assertions,
    )
    record.clientId = client.clientId
    const binding = bindingOf(dpopJkt, certificate)
    if (grantType === CLIENT_CREDENTIALS) return this.#clientCredentials(form, client, binding)
    if (grantType === TOKEN_EXCHANGE && this.context.options.exchange) return this.#exchange(form, client, binding)
    throw new TokenError(400, 'unsupported_grant_type', 'grant_type is not supported')
  }

  async #clientCredentials(form: URLSearchParams, client: ResolvedClient, binding: Binding): Promise<Record<string, unknown>> {
    const requested = requestedScopes(form)
    checkClientScopes(requested, client)
    const scopes = requested.length > 0 ? requested : [...(client.scopes ?? [])]
    const audience = audienceOf(form, client)
    const claims = { sub: client.identity, client_id: client.clientId, ...scopeClaim(scopes) }
    return this.#issue({ claims, notAfter: undefined, audience, binding, scopes, extra: {} })
  }

  async #exchange(form: URLSearchParams, client: ResolvedClient, binding: Binding): Promise<Record<string, unknown>> {
    const subjectToken = form.get('subject_token')
    if (subjectToken === null) throw new TokenError(400, 'invalid_request', 'subject_token is missing')
    if (form.get('subject_token_type') !== ACCESS_TOKEN_TYPE) throw new TokenError(400, 'invalid_request', 'unsupported subject_token_type')
    const requestedType = form.get('requested_token_type')
    if (requestedType !== null && requestedType !== ACCESS_TOKEN_TYPE) throw new TokenError(400, 'invalid_request', 'unsupported requested_token_type')
    if (form.has('actor_token')) throw new TokenError(400, 'invalid_request', 'actor_token is not supported')
    const subject = await this.#verifySubject(subjectToken)
    const mayAct = subject['may_act'] as { sub?: unknown } | undefined
    if (mayAct !== undefined && mayAct?.sub !== client.identity) throw new TokenError(400, 'invalid_grant', 'the client may not act for this subject')

    const requested = requestedScopes(form)
    checkClientScopes(requested, client)
    const subjectScopes = typeof subject['scope'] === 'string' ? subject['scope'].split(' ').filter(Boolean) : []
    // Exchange only narrows: the result never holds a scope the subject token did not.
    const scopes = (requested.length > 0 ? requested : subjectScopes).filter((s) => subjectScopes.includes(s) && (client.scopes?.has(s) ?? true))
    if (requested.length > 0 && scopes.length === 0) throw new TokenError(400, 'invalid_scope', 'no requested scope is held by the subject token')
    const audience = audienceOf(form, client)
    const act = subject['act'] === undefined ? { sub: client.identity } : { sub: client.identity, act: subject['act'] }
    const claims = { sub: subject['sub'], client_id: client.clientId, act, ...scopeClaim(scopes) }
    return this.#issue({ claims, notAfter: subject['exp'] as number, audience, binding, scopes, extra: { issued_token_type: ACCESS_TOKEN_TYPE } })
  }

  /** A subject token is an unexpired access token this issuer signed (any of its current keys). */
  async #verifySubject(token: string): Promise<Record<string, unknown>> {
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet(this.context.keys.publicJwks()), {
        issuer: this.context.issuer(),
        typ: 'at+jwt',
        algorithms: this.context.keys.algorithms(),
        requiredClaims: ['exp', 'sub'],
      })
      if (typeof payload.sub !== 'string' || typeof payload.exp !== 'number') throw new TypeError('sub/exp')
      return payload
    } catch {
      throw new TokenError(400, 'invalid_grant', 'subject_token is invalid or expired')
    }
  }

  async #issue({ claims, notAfter, audience, binding, scopes, extra }: Issuance): Promise<Record<string, unknown>> {
    const now = Math.floor(Date.now() / 1000)
    const ttl = Math.min(this.context.options.accessTokenTtl, (notAfter ?? Infinity) - now)
    if (ttl <= 0) throw new TokenError(400, 'invalid_grant', 'subject_token is invalid or expired')
    const accessToken = await signAccessToken(this.context.keys.select(), this.context.issuer(), claims, {
      issuedAt: now,
      expiresInSeconds: ttl,
      ...(audience === undefined ? {} : { audience }),
      ...(binding.dpopJkt === undefined ? {} : { dpopJkt: binding.dpopJkt }),
      ...(binding.x5tS256 === undefined ? {} : { x5tS256: binding.x5tS256 }),
    })
    return {
      access_token: accessToken,
      ...extra,
      token_type: binding.tokenType,
      expires_in: ttl,
      ...(scopes.length > 0 ? { scope: scopes.join(' ') } : {}),
    }
  }
}

/** DPoP wins (RFC 9449 §5); else a verified client certificate binds the token (RFC 8705 §3); else a bearer token. */
function bindingOf(dpopJkt: string | undefined, certificate: ClientCertificate | undefined): Binding {
  if (dpopJkt !== undefined) return { tokenType: 'DPoP', dpopJkt }
  if (certificate !== undefined && !certificate.isCa) return { tokenType: 'Bearer', x5tS256: certificate.x5tS256 }
  return { tokenType: 'Bearer' }
}

/** The form body: `application/x-www-form-urlencoded`, each parameter once (except `resource`). */
function readForm(req: IncomingMessage, body: Buffer | undefined): URLSearchParams {
  if (body === undefined) throw new TokenError(400, 'invalid_request', 'request body is too large')
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') throw new TokenError(400, 'invalid_request', 'body must be application/x-www-form-urlencoded')
  const form = new URLSearchParams(body.toString('utf8'))
  const seen = new Set<string>()
  for (const name of form.keys()) {
    if (seen.has(name) && !REPEATABLE.has(name)) throw new TokenError(400, 'invalid_request', 'a parameter is repeated')
    seen.add(name)
  }
  return form
}

function requestedScopes(form: URLSearchParams): string[] {
  const scope = form.get('scope')
  if (scope === null) return []
  const scopes = scope.split(' ')
  if (!scopes.every((s) => SCOPE_TOKEN.test(s))) throw new TokenError(400, 'invalid_scope', 'scope is malformed')
  return [...new Set(scopes)]
}

function checkClientScopes(requested: readonly string[], client: ResolvedClient): void {
  if (client.scopes && requested.some((s) => !client.scopes?.has(s))) throw new TokenError(400, 'invalid_scope', 'scope not allowed for this client')
}

/**
 * The token's `aud`: each `resource` (RFC 8707 §2: an absolute URI without a fragment), then each
 * `audience` (RFC 8693 §2.1: a logical name, as authorization servers that scope tokens by
 * audience take it), each allowed for the client; one gives a string `aud`.
 */
function audienceOf(form: URLSearchParams, client: ResolvedClient): string | string[] | undefined {
  const resources = [...new Set(form.getAll('resource'))]
  for (const resource of resources) {
    const url = URL.canParse(resource) ? new URL(resource) : undefined
    if (!url || url.hash !== '' || resource.includes('#')) throw new TokenError(400, 'invalid_target', 'resource must be an absolute URI without a fragment')
  }
  const audiences = [...new Set(form.getAll('audience'))]
  if (audiences.some((audience) => audience.length === 0)) throw new TokenError(400, 'invalid_target', 'audience must not be empty')
  const targets = [...new Set([...resources, ...audiences])]
  if (client.resources && targets.some((target) => !client.resources?.has(target))) {
    throw new TokenError(400, 'invalid_target', 'resource not allowed for this client')
  }
  if (targets.length === 0) return undefined
  return targets.length === 1 ? targets[0] : targets
}

function scopeClaim(scopes: readonly string[]): { scope?: string } {
  return scopes.length > 0 ? { scope: scopes.join(' ') } : {}
}

/**
 * Reads a request body up to `limit` bytes.
 *
 * @returns The body, or `undefined` when it was larger (the rest is drained, not kept).
 * @internal
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) chunks.push(chunk)
    })
    req.on('end', () => resolve(size <= limit ? Buffer.concat(chunks) : undefined))
    req.on('error', () => resolve(undefined))
    req.on('close', () => resolve(size <= limit ? Buffer.concat(chunks) : undefined))
  })
}

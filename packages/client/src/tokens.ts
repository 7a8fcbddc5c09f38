/**
 * The token side: `createTokenSource` joins the authorization server (authorization-server.ts),
 * the cache (token-cache.ts) and the events, and maps every failure to a typed error
 * (`AuthorizationServerError`, `AuthorizationServerUnavailableError`) that carries no token.
 */
import { performance } from 'node:perf_hooks'
import { decodeJwt } from 'jose'
import * as oauth from 'oauth4webapi'
import { createAuthorizationServer, grantOf, type AuthorizationServer, type IdentityMaterial, type TokenIdentity } from './authorization-server.js'
import { DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.js'
import type { ClientBinding, DpopKey, IssuedToken, SubjectToken, TokenRequest, TokenSource } from './contracts.js'
import { AuthorizationServerError, AuthorizationServerUnavailableError, ClientError } from './errors.js'
import type { ClientEvent, ClientEventHook } from './events.js'
import { tokenCacheKey, TokenCache, type CachedToken } from './token-cache.js'
import type { TokenOptions } from './token-options.js'

/** Lifetime assumed when the answer has no `expires_in` and the token is not a JWT with `exp` (s). */
const DEFAULT_LIFETIME_SECONDS = 60

/** What {@link createTokenSource} needs. */
export interface TokenSourceSettings {
  /** From `resolveTokenOptions`. */
  options: TokenOptions
  /** The workload certificate: token requests go over mTLS with it (to `mtls_endpoint_aliases` when published). */
  identity: TokenIdentity | undefined
  /** From `createDpopKey`: DPoP-bound tokens. */
  dpop: DpopKey | undefined
  /** Receives token events; a throwing hook is ignored. */
  emit: ClientEventHook
  /** Clock (ms since the epoch) for expiry, refresh and backoff. Default `Date.now`. */
  now?: () => number
  /** Backoff after failures. Default 1 s doubling to 60 s, ±20%. */
  backoff?: BackoffPolicy
}

/**
 * The token side of the client: tokens per (resource, scopes, binding, user, certificate), from
 * the client credentials grant, or from a token exchange when the request has a `subject`.
 *
 * - Binding: `dpop` → DPoP-bound; else `identity` → requests over mTLS (certificate-bound at an
 *   RFC 8705 server); else bearer.
 * - Cache: reused until `exp - expiryMargin`; from `exp - refreshAhead` a `get` answers the cached
 *   token and refreshes it in the background; one request in flight per key; an exchanged token
 *   never outlives its subject token (`expiresAt`). Both margins are at most half the lifetime.
 * - Failures: backoff per key with jitter; meanwhile a still-valid token is served and a call with
 *   none gets the last error at once.
 * @example
 * const tokens = createTokenSource({ options: resolveTokenOptions(options), identity, dpop, emit })
 * const token = await tokens.get({ service: 'orders', resource: 'https://orders.internal', scopes: ['orders:read'] })
 */
export function createTokenSource(settings: TokenSourceSettings): TokenSource {
  const { options, identity, dpop } = settings
  const now = settings.now ?? Date.now
  const emit = (event: Omit<ClientEvent, 'time'>): void => {
    try {
      settings.emit({ time: now(), ...event })
    } catch {
      // A hook must not break token requests.
    }
  }
  const context: IssueContext = {
    options,
    binding: dpop ? 'dpop' : identity ? 'mtls' : 'bearer',
    server: createAuthorizationServer({ options, identity, dpop, emit, now, ...(settings.backoff ? { backoff: settings.backoff } : {}) }),
    // Loaded once; awaited by each token request (not by cached gets).
    telemetry: loadTokenTelemetry(),
    emit,
    now,
    closed: false,
  }
  const cache = new TokenCache({ max: options.cacheSize, backoff: settings.backoff ?? DEFAULT_BACKOFF, now })

  return {
    async get(request) {
      if (context.closed) throw closedError(request.service)
      const subject = request.subject
      if (subject?.expiresAt !== undefined && subject.expiresAt * 1000 <= now()) {
        throw new ClientError('not_exchangeable', 'the subject token has expired: nothing to exchange', { service: request.service })
      }
      const material = identity ? await currentMaterial(identity, request.service) : undefined
      const key = tokenCacheKey(request, context.binding, material?.thumbprint)
      return cache.get(key, (background) => issue(context, request, material, background))
    },
    invalidate(_request, token) {
      cache.invalidate(token)
    },
    async close() {
      context.closed = true
      cache.clear()
      await context.server.close()
    },
  }
}

/** What {@link issue} needs of its token source. */
interface IssueContext {
  readonly options: TokenOptions
  readonly binding: ClientBinding
  readonly server: AuthorizationServer
  readonly telemetry: Promise<TokenTelemetry | undefined>
  readonly emit: (event: Omit<ClientEvent, 'time'>) => void
  readonly now: () => number
  /** Set by `close()`: an answer that arrives later is not cached. */
  closed: boolean
}

/** One token request for the cache: the answer as a cached token, reported (event, span); any failure as a `ClientError`. */
async function issue(context: IssueContext, request: TokenRequest, material: IdentityMaterial | undefined, background: boolean): Promise<CachedToken> {
  const { options, binding, server, emit, now } = context
  const grant = {
    service: request.service,
    resource: request.resource,
    audience: request.audience ?? [],
    scopes: request.scopes,
    ...(request.subject ? { subjectToken: request.subject.value } : {}),
  }
  const base = { service: request.service, grant: grantOf(grant), binding } as const
  const started = now()
  const startedAt = performance.now()
  const span = (await context.telemetry)?.start(base)
  try {
    const response = await server.requestToken(grant, material)
    if (context.closed) throw closedError(request.service)
    const cached = toCachedToken(response, started, request.subject, options, request.service)
    const expiresIn = Math.round((cached.exp - started) / 1000)
    emit({ type: background ? 'token_refresh' : 'token_request', ...base, durationMs: performance.now() - startedAt, expiresIn })
    span?.end(undefined)
    return cached.cached
  } catch (error) {
    const failure = toClientError(error, request.service)
    emit({
      type: 'token_failure',
      ...base,
      durationMs: performance.now() - startedAt,
      code: failure.code,
      ...(failure instanceof AuthorizationServerError ? { error: failure.error } : {}),
    })
    span?.end(failure)
    throw failure
  }
}

async function currentMaterial(identity: TokenIdentity, service: string): Promise<IdentityMaterial> {
  try {
    return await identity.current()
  } catch (error) {
    if (error instanceof ClientError) throw error
    throw new ClientError('identity_unavailable', 'the workload certificate could not be read', { service, cause: error })
  }
}

const closedError = (service: string): ClientError => new AuthorizationServerUnavailableError({ reason: 'network', service, message: 'the client is closed' })

/**
 * The cached form of a token answer: `exp` from `expires_in` (else the JWT's own `exp`, else
 * {@link DEFAULT_LIFETIME_SECONDS}), capped at the subject token's `expiresAt`; the margins are at
 * most half the lifetime so a short-lived token is still usable for a while.
 */
function toCachedToken(
  response: oauth.TokenEndpointResponse,
  started: number,
  subject: SubjectToken | undefined,
  options: TokenOptions,
  service: string,
): { cached: CachedToken; exp: number } {
  let exp = started + lifetimeSeconds(response) * 1000
  if (subject?.expiresAt !== undefined) exp = Math.min(exp, subject.expiresAt * 1000)
  const lifetime = exp - started
  if (!(lifetime > 0)) {
    throw new AuthorizationServerUnavailableError({
      reason: 'invalid_response',
      service,
      message: 'the authorization server issued a token that has already expired',
    })
  }
  const margin = Math.min(options.expiryMargin * 1000, lifetime / 2)
  const ahead = Math.min(options.refreshAhead * 1000, lifetime / 2)
  const token: IssuedToken = Object.freeze({
    value: response.access_token,
    scheme: response.token_type === 'dpop' ? 'DPoP' : 'Bearer',
    expiresAt: Math.floor(exp - margin),
  })
  return { cached: { token, refreshAt: Math.floor(exp - ahead) }, exp }
}

function lifetimeSeconds(response: oauth.TokenEndpointResponse): number {
  if (typeof response.expires_in === 'number') return response.expires_in
  try {
    // Unverified: only an upper bound for caching, the service verifies the token.
    const { exp, iat } = decodeJwt(response.access_token)
    if (typeof exp === 'number') return exp - (typeof iat === 'number' ? iat : Math.floor(Date.now() / 1000))
  } catch {
    // Not a JWT.
  }
  return DEFAULT_LIFETIME_SECONDS
}

/**
 * A failure as a `ClientError`: the server's RFC 6749 §5.2 error as `AuthorizationServerError`;
 * timeouts, network errors, 5xx and answers that are not token responses as
 * `AuthorizationServerUnavailableError`. The cause keeps oauth4webapi's message and code only (its
 * own cause may hold the response body, so possibly a token).
 */
export function toClientError(error: unknown, service: string): ClientError {
  if (error instanceof ClientError) return error
  const cause = sanitized(error)
  if (error instanceof oauth.ResponseBodyError) {
    return new AuthorizationServerError({ error: error.error, ...optional(error.error_description), status: error.status, service, cause })
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const challenge = error.cause.find((c) => typeof c.parameters.error === 'string')
    if (challenge && error.status < 500) {
      return new AuthorizationServerError({
        error: challenge.parameters.error!,
        ...optional(challenge.parameters.error_description),
        status: error.status,
        service,
        cause,
      })
    }
    return new AuthorizationServerUnavailableError({ reason: 'http_status', status: error.status, service, cause })
  }
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return new AuthorizationServerUnavailableError({ reason: 'timeout', service, cause })
  }
  // The cause is the response (undici's, not the global `Response` class).
  const status = (error as { cause?: { status?: unknown } }).cause?.status
  if (error instanceof oauth.OperationProcessingError && error.code === oauth.RESPONSE_IS_NOT_CONFORM && typeof status === 'number') {
    return new AuthorizationServerUnavailableError({ reason: 'http_status', status, service, cause })
  }
  if (error instanceof oauth.OperationProcessingError || error instanceof oauth.UnsupportedOperationError) {
    return new AuthorizationServerUnavailableError({ reason: 'invalid_response', service, cause })
  }
  return new AuthorizationServerUnavailableError({ reason: 'network', service, cause })
}

const optional = (description: string | undefined): { errorDescription?: string } => (description ? { errorDescription: description } : {})

/** An `Error` with the name, code and message of `error` and nothing else. */
function sanitized(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error))
  const copy = new Error(error.message)
  copy.name = error.name
  const code = (error as { code?: unknown }).code ?? (error as { cause?: { code?: unknown } }).cause?.code
  if (typeof code === 'string') Object.assign(copy, { code })
  return copy
}

/** OpenTelemetry for token requests, when `@opentelemetry/api` is installed. */
interface TokenTelemetry {
  /** A span `callsign.client.token`; `end` records the outcome and counts `callsign.client.token_requests`. */
  start(attributes: { service: string; grant: string; binding: string }): { end(failure: ClientError | undefined): void }
}

interface OtelSpan {
  setAttribute(key: string, value: string): unknown
  setStatus(status: { code: number; message?: string }): unknown
  end(): void
}
interface OtelApi {
  trace: { getTracer(name: string): { startSpan(name: string, options?: { attributes?: Record<string, string> }): OtelSpan } }
  metrics: {
    getMeter(name: string): {
      createCounter(name: string, options?: { description?: string }): { add(value: number, attributes?: Record<string, string>): void }
    }
  }
}

/** Load OpenTelemetry if the application has it; `undefined` otherwise. Never throws. */
async function loadTokenTelemetry(): Promise<TokenTelemetry | undefined> {
  let api: OtelApi
  try {
    const moduleName = '@opentelemetry/api'
    api = (await import(moduleName)) as OtelApi
  } catch {
    return undefined
  }
  try {
    const tracer = api.trace.getTracer('callsign')
    // The metrics API does not proxy: a meter taken before the application registers its provider
    // stays the no-op one, so the counter is looked up again when the meter changes.
    let meter: unknown
    let requests: ReturnType<ReturnType<OtelApi['metrics']['getMeter']>['createCounter']> | undefined
    const counter = () => {
      const current = api.metrics.getMeter('callsign')
      if (current !== meter || !requests) {
        meter = current
        requests = current.createCounter('callsign.client.token_requests', { description: 'Token requests made by @callsign/client' })
      }
      return requests
    }
    return {
      start(attributes) {
        let span: OtelSpan | undefined
        try {
          span = tracer.startSpan('callsign.client.token', {
            attributes: { 'callsign.service': attributes.service, 'callsign.grant': attributes.grant, 'callsign.binding': attributes.binding },
          })
        } catch {
          span = undefined
        }
        return {
          end(failure) {
            try {
              const outcome = failure ? failure.code : 'ok'
              counter().add(1, { grant: attributes.grant, binding: attributes.binding, outcome })
              if (failure) span?.setStatus({ code: 2, message: failure.code })
              span?.end()
            } catch {
              // Telemetry never breaks a token request.
            }
          },
        }
      },
    }
  } catch {
    return undefined
  }
}

/**
 * Calling one service: its token (the client's own, or exchanged for the user of a request), a
 * fresh DPoP proof per request, the retries RFC 9449 and RFC 6750 allow, and what a refusal
 * said. Three transports: `fetch`, `headers` (for any HTTP client) and an undici `Dispatcher`.
 */
import { fetch as undiciFetch, Headers as UndiciHeaders, type Dispatcher } from 'undici'
import { challengeError, isProblemResponse, parseChallenges, readProblem } from './challenge.js'
import type { Connections } from './connections.js'
import type { DpopKey, IssuedToken, SubjectToken, TokenRequest, TokenSource } from './contracts.js'
import { ClientError, ServerIdentityError, ServiceRefusedError, ServiceUnavailableError, type Challenge } from './errors.js'
import type { ClientEventHook } from './events.js'
import { createAthMemo, createProof, DpopNonceMemory } from './proof.js'
import type { ResolvedService } from './service-options.js'
import {
  discard,
  dispatchHandler,
  normalizeMethod,
  prepareBody,
  transportFailure,
  withHeaders,
  type PreparedBody,
  type UndiciResponse,
} from './service-http.js'

/** Settings of {@link createServiceClient} (the glue in index.ts passes them). */
export interface ServiceClientSettings {
  /** The service's name in `services`. */
  readonly name: string
  readonly service: ResolvedService
  readonly tokens: TokenSource
  /** Present: tokens are DPoP-bound and every request carries a proof of this key. */
  readonly dpop: DpopKey | Promise<DpopKey> | undefined
  readonly connections: Connections
  readonly emit: ClientEventHook
  /** The subject token of an `onBehalfOf` value (core's `presentedToken`), or `undefined` when it carries none. */
  readonly subjectOf: (onBehalfOf: unknown) => SubjectToken | undefined
  /** Clock of proofs' `iat` and events (ms). Default `Date.now`. */
  readonly now?: () => number
}

/** `fetch`'s `init`, plus the user the call is made for. */
export interface ServiceRequestInit extends RequestInit {
  /**
   * The auth context of the request being served (`req.auth`, `ctx.state.auth`, ...): the call
   * carries a token exchanged (RFC 8693) for its user. `undefined` or `null`: the client's own token.
   */
  onBehalfOf?: unknown
}

/** What {@link ServiceClient.headers} is asked for. */
export interface ServiceHeadersRequest {
  /** The HTTP method exactly as it will be sent (the proof's `htm`). */
  method: string
  /** Absolute, or relative to the service's url. */
  url: string | URL
  /** As {@link ServiceRequestInit.onBehalfOf}. */
  onBehalfOf?: unknown
  /** A `DPoP-Nonce` the service just sent (remembered for later proofs too). */
  dpopNonce?: string
}

/**
 * Headers to add to a request to the service. A type alias, not an interface, so it is accepted
 * where an index signature is expected (node:https `OutgoingHttpHeaders`, axios, got).
 */
export type ServiceHeaders = {
  authorization: string
  /** Present with DPoP. */
  dpop?: string
}

/** One service, three ways to call it. */
export interface ServiceClient {
  /**
   * A `fetch` to the service with its token (and a DPoP proof), over the client's connections
   * (workload certificate, server identity check). Relative URLs resolve against the service's
   * url; another origin is refused (`TypeError`). Redirects are returned, not followed (a token
   * and a proof are for one URL). Retries: see the README ("Calling a service").
   * Rejects with `ServiceRefusedError` on a 401, or a 403 with a challenge or a problem document;
   * `ServerIdentityError` when the server is not `spiffeId`; `ServiceUnavailableError` when there
   * was no answer (refused, reset, TLS); an abort through `signal` rejects as fetch does. Other
   * statuses resolve. The response is undici's WHATWG `Response`, as undici's `fetch` returns it
   * (not Node's global class: `instanceof Response` is false; `new Response(res.body, res)` makes one).
   */
  fetch(input: string | URL | Request, init?: ServiceRequestInit): Promise<Response>
  /** The `authorization` (and `dpop`) headers for one request, for any HTTP client. No retry, no server identity check. */
  headers(request: ServiceHeadersRequest): Promise<ServiceHeaders>
  /**
   * An undici `Dispatcher` (for `undici.request`, `undici.fetch`, ...) that adds the headers to
   * requests to the service's origin, over the client's connections (certificate, server
   * identity). Requests to other origins pass unchanged. No retry; nonces are remembered. A
   * request to the service that gets no answer fails with `ServiceUnavailableError`, as `fetch`.
   */
  dispatcher(options?: { onBehalfOf?: unknown }): Dispatcher
}

/** A server identity refusal in `error` or its causes (fetch and undici wrap what the connector threw). */
function identityRefusalIn(error: unknown): ServerIdentityError | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (cause instanceof ServerIdentityError) return cause
  }
  return undefined
}

/** The `ServiceUnavailableError` of a network or TLS failure, `failure` being the error that names it. */
function unavailable(name: string, failure: unknown, cause: Error): ServiceUnavailableError {
  const { reason, code } = transportFailure(failure)
  return new ServiceUnavailableError({ service: name, reason, ...(code === undefined ? {} : { code }), cause })
}

/**
 * The error of a `fetch` that got no answer. fetch wraps network errors in `TypeError('fetch
 * failed')`: a server identity refusal is thrown as itself; an abort through the caller's signal
 * stays what fetch rejected with (the standard `AbortError`, or the signal's reason); any other
 * network or TLS failure becomes a `ServiceUnavailableError`.
 */
function callFailure(name: string, error: unknown, signal: AbortSignal | null | undefined): unknown {
  const refusal = identityRefusalIn(error)
  if (refusal) return refusal
  if (signal?.aborted || !(error instanceof TypeError) || error.message !== 'fetch failed') return error
  return unavailable(name, error.cause, error)
}

/**
 * The error of a request sent through `dispatcher()` that got no (whole) answer, as
 * {@link callFailure} for fetch: a server identity refusal, an abort, and undici's argument errors
 * stay what they are; a network or TLS failure becomes a `ServiceUnavailableError`.
 */
function dispatchFailure(name: string, error: Error): Error {
  const code = (error as { code?: unknown }).code
  if (error instanceof ClientError || error.name === 'AbortError' || code === 'UND_ERR_ABORTED' || code === 'UND_ERR_INVALID_ARG') return error
  return identityRefusalIn(error) ?? unavailable(name, error, error)
}

type RetryReason = 'use_dpop_nonce' | 'invalid_token'

/** What the steps of one service's calls share: the settings, the service's nonces and `ath` memo. */
interface ServiceContext extends Omit<ServiceClientSettings, 'emit' | 'now'> {
  readonly now: () => number
  readonly nonces: DpopNonceMemory
  readonly ath: (accessToken: string) => string
  /** Report a retry (a throwing hook is ignored: the call goes on). */
  readonly reportRetry: (reason: RetryReason) => void
}

/** One `fetch` call, prepared once and sent up to three times. */
interface PreparedRequest {
  readonly url: URL
  readonly method: string
  readonly headers: UndiciHeaders
  readonly body: PreparedBody
  readonly signal: AbortSignal | null | undefined
  readonly tokenRequest: TokenRequest
}

/** Create the call side of one service. */
export function createServiceClient(settings: ServiceClientSettings): ServiceClient {
  const now = settings.now ?? Date.now
  const reportRetry = (reason: RetryReason): void => {
    try {
      settings.emit({ type: 'retry', time: now(), service: settings.name, reason })
    } catch {
      // A hook must not throw; if it does, the call goes on.
    }
  }
  const context: ServiceContext = { ...settings, now, nonces: new DpopNonceMemory(), ath: createAthMemo(), reportRetry }
  return {
    fetch: (input, init) => serviceFetch(context, input, init),
    headers: (request) => serviceHeaders(context, request),
    dispatcher: (options = {}) => context.connections.dispatcher.compose(authorizingInterceptor(context, tokenRequestFor(context, options.onBehalfOf))),
  }
}

/** The token request of a call: the client's own token, or one exchanged for the user of `onBehalfOf`. */
function tokenRequestFor(context: ServiceContext, onBehalfOf: unknown): TokenRequest {
  const { name, service } = context
  const base = { service: name, resource: service.resource, scopes: service.scopes, audience: service.audience }
  if (onBehalfOf === undefined || onBehalfOf === null) return base
  const subject = context.subjectOf(onBehalfOf)
  if (subject === undefined) {
    throw new ClientError(
      'not_exchangeable',
      `onBehalfOf carries no verified token to exchange (a certificate-only caller has no user): the call to service "${name}" cannot be made for a user`,
      {
        service: name,
      },
    )
  }
  return { ...base, subject }
}

/** `input` resolved against the service's url; another origin is refused. */
function urlOf(context: ServiceContext, input: string | URL): URL {
  const { name, service } = context
  const url = new URL(input, service.url)
  if (url.origin !== service.origin) {
    throw new TypeError(`Callsign: a request of service "${name}" must go to ${service.origin}: its token is for that service only`)
  }
  return url
}

/** The `authorization` header for `token` and, with DPoP, a fresh proof for `method` and `url`. */
async function authorize(context: ServiceContext, method: string, url: URL, token: IssuedToken): Promise<ServiceHeaders> {
  const authorization = `${token.scheme} ${token.value}`
  if (context.dpop === undefined) return { authorization }
  const request = { method, url, accessToken: token.value, nonce: context.nonces.get(context.service.origin) }
  const proof = createProof(await context.dpop, request, context.ath, context.now)
  return { authorization, dpop: proof }
}

/** Step 1 of `fetch`: URL, method, headers and a body that can be sent again, from fetch's arguments. */
async function prepareRequest(context: ServiceContext, input: string | URL | Request, init: ServiceRequestInit): Promise<PreparedRequest> {
  const { onBehalfOf, ...requestInit } = init
  const fromRequest = input instanceof Request ? input : undefined
  const url = urlOf(context, fromRequest ? fromRequest.url : (input as string | URL))
  const method = normalizeMethod(requestInit.method ?? fromRequest?.method ?? 'GET')
  // undici's own Headers: handed to undici's fetch as is, not converted from the global class per attempt.
  const headers = new UndiciHeaders((requestInit.headers ?? fromRequest?.headers) as ConstructorParameters<typeof UndiciHeaders>[0])
  const body = await prepareBody(requestInit.body !== undefined ? requestInit.body : fromRequest?.body)
  if (body.contentType !== null && !headers.has('content-type')) headers.set('content-type', body.contentType)
  const signal = requestInit.signal ?? fromRequest?.signal
  return { url, method, headers, body, signal, tokenRequest: tokenRequestFor(context, onBehalfOf) }
}

/** One attempt: the request with `token` (and a fresh proof), over the client's connections. */
async function sendAttempt(context: ServiceContext, request: PreparedRequest, token: IssuedToken): Promise<UndiciResponse> {
  const { url, method, headers, body, signal } = request
  const auth = await authorize(context, method, url, token)
  headers.set('authorization', auth.authorization)
  if (auth.dpop !== undefined) headers.set('dpop', auth.dpop)
  try {
    return await undiciFetch(url, {
      method,
      headers,
      body: body.bytes ?? body.stream ?? null,
      redirect: 'manual',
      dispatcher: context.connections.dispatcher,
      ...(body.stream ? { duplex: 'half' as const } : {}),
      ...(signal ? { signal } : {}),
    })
  } catch (error) {
    throw callFailure(context.name, error, signal)
  }
}

/**
 * The retry decision after a 401 or 403: send once more after `use_dpop_nonce` with a new nonce
 * (RFC 9449 §8), or after `invalid_token` with a new token, once per reason and only with a body
 * that can be sent again. A token refused with `invalid_token` is dropped even when the call
 * cannot be retried: the next call asks for a new one.
 */
function retryReason(
  context: ServiceContext,
  request: PreparedRequest,
  answer: { status: number; challenges: readonly Challenge[]; nonce: string | undefined; token: IssuedToken },
  retried: ReadonlySet<RetryReason>,
): RetryReason | undefined {
  const error = answer.status === 401 ? challengeError(answer.challenges) : undefined
  const replayable = request.body.stream === undefined
  if (error === 'use_dpop_nonce' && context.dpop !== undefined && answer.nonce !== undefined && !retried.has(error) && replayable) return error
  if (error !== 'invalid_token' || retried.has(error)) return undefined
  context.tokens.invalidate(request.tokenRequest, answer.token)
  return replayable ? error : undefined
}

/** The `ServiceRefusedError` of a refusal, with its problem document when it has one. */
async function refusal(context: ServiceContext, response: Response, challenges: Challenge[]): Promise<ServiceRefusedError> {
  const problem = isProblemResponse(response.headers.get('content-type')) ? await readProblem(response.body) : (await discard(response), undefined)
  return new ServiceRefusedError({ service: context.name, status: response.status, challenges, ...(problem === undefined ? {} : { problem }) })
}

/**
 * undici's `Response` as is: a WHATWG `Response` (status, headers, streamed body, `url`), typed as
 * the global one. Rebuilding it as the global class cost about 25 µs per call (bench/client.mjs),
 * more than everything else the client adds; only `instanceof Response` tells them apart.
 */
const asResponse = (response: UndiciResponse): Response => response as unknown as Response

/** {@link ServiceClient.fetch}: prepare, then attempt until an answer that is not retried. */
async function serviceFetch(context: ServiceContext, input: string | URL | Request, init: ServiceRequestInit = {}): Promise<Response> {
  const request = await prepareRequest(context, input, init)
  await context.connections.refresh()
  const retried = new Set<RetryReason>()
  while (true) {
    const token = await context.tokens.get(request.tokenRequest)
    const response = await sendAttempt(context, request, token)
    const nonce = context.nonces.remember(context.service.origin, response.headers.get('dpop-nonce'))
    if (response.status !== 401 && response.status !== 403) return asResponse(response)
    const challenges = parseChallenges(response.headers.get('www-authenticate'))
    const reason = retryReason(context, request, { status: response.status, challenges, nonce, token }, retried)
    if (reason !== undefined) {
      retried.add(reason)
      context.reportRetry(reason)
      await discard(response)
      continue
    }
    if (response.status === 401 || challenges.length > 0 || isProblemResponse(response.headers.get('content-type'))) {
      throw await refusal(context, response as unknown as Response, challenges)
    }
    return asResponse(response)
  }
}

/** {@link ServiceClient.headers}. */
async function serviceHeaders(context: ServiceContext, request: ServiceHeadersRequest): Promise<ServiceHeaders> {
  if (typeof request !== 'object' || request === null) throw new TypeError('Callsign: headers() needs { method, url }')
  if (typeof request.method !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(request.method)) {
    throw new TypeError('Callsign: headers() needs the HTTP method as a string (e.g. "GET")')
  }
  const url = urlOf(context, request.url)
  if (request.dpopNonce !== undefined) context.nonces.remember(context.service.origin, request.dpopNonce)
  const token = await context.tokens.get(tokenRequestFor(context, request.onBehalfOf))
  return authorize(context, request.method, url, token)
}

/** The interceptor of {@link ServiceClient.dispatcher}: requests to the service's origin get the headers; others pass unchanged. */
function authorizingInterceptor(context: ServiceContext, tokenRequest: TokenRequest): Dispatcher.DispatcherComposeInterceptor {
  const { connections, service, nonces, tokens } = context
  return (dispatch) => (opts, handler) => {
    const url = new URL(opts.path, opts.origin)
    if (url.origin !== service.origin) return dispatch(opts, handler)
    const send = async (): Promise<void> => {
      await connections.refresh()
      const token = await tokens.get(tokenRequest)
      const auth = await authorize(context, opts.method, url, token)
      dispatch(
        { ...opts, headers: withHeaders(opts.headers, auth) },
        dispatchHandler(handler, {
          remember: (value) => nonces.remember(service.origin, value),
          failure: (error) => dispatchFailure(context.name, error),
        }),
      )
    }
    send().catch((error: unknown) => handler.onResponseError?.(null as never, error as Error))
    return true
  }
}

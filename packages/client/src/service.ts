/**
 * Calling one service: its token (the client's own, or exchanged for the user of a request), a
 * fresh DPoP proof per request, the retries RFC 9449 and RFC 6750 allow, and what a refusal
 * said. Three transports: `fetch`, `headers` (for any HTTP client) and an undici `Dispatcher`.
 */
import { fetch as undiciFetch, type Dispatcher } from 'undici'
import { challengeError, isProblemResponse, parseChallenges, readProblem } from './challenge.js'
import type { Connections } from './connections.js'
import type { DpopKey, IssuedToken, SubjectToken, TokenRequest, TokenSource } from './contracts.js'
import { ClientError, ServerIdentityError, ServiceRefusedError } from './errors.js'
import type { ClientEventHook } from './events.js'
import { createAthMemo, createProof, DpopNonceMemory } from './proof.js'
import type { ResolvedService } from './service-options.js'

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

/** Headers to add to a request to the service. */
export interface ServiceHeaders {
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
   * `ServerIdentityError` when the server is not `spiffeId`; other statuses resolve.
   */
  fetch(input: string | URL | Request, init?: ServiceRequestInit): Promise<Response>
  /** The `authorization` (and `dpop`) headers for one request, for any HTTP client. No retry, no server identity check. */
  headers(request: ServiceHeadersRequest): Promise<ServiceHeaders>
  /**
   * An undici `Dispatcher` (for `undici.request`, `undici.fetch`, ...) that adds the headers to
   * requests to the service's origin, over the client's connections (certificate, server
   * identity). Requests to other origins pass unchanged. No retry; nonces are remembered.
   */
  dispatcher(options?: { onBehalfOf?: unknown }): Dispatcher
}

/** A request body that can be sent again as is: bytes and the content type fetch would give them. */
interface PreparedBody {
  readonly bytes: Uint8Array | undefined
  readonly stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | undefined
  readonly contentType: string | null
}

const isStream = (body: unknown): body is ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> =>
  body instanceof ReadableStream || (typeof body === 'object' && body !== null && Symbol.asyncIterator in body)

/** Strings, bytes, `URLSearchParams`, `Blob`s and `FormData` are read once into bytes (so a retry can send them again); streams are not. */
async function prepareBody(body: unknown): Promise<PreparedBody> {
  if (body === undefined || body === null) return { bytes: undefined, stream: undefined, contentType: null }
  if (isStream(body)) return { bytes: undefined, stream: body, contentType: null }
  const encoded = new Response(body as ConstructorParameters<typeof Response>[0])
  return { bytes: new Uint8Array(await encoded.arrayBuffer()), stream: undefined, contentType: encoded.headers.get('content-type') }
}

/** Fetch upper-cases these methods only (others are sent as written): the proof's `htm` is what is sent. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])
const normalizeMethod = (method: string): string => (NORMALIZED_METHODS.has(method.toUpperCase()) ? method.toUpperCase() : method)

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304])

/** Discard a response body (so its connection can be reused). */
const discard = (response: { body: ReadableStream | null }): Promise<void> => response.body?.cancel().catch(() => {}) ?? Promise.resolve()

/** fetch wraps network errors in `TypeError('fetch failed')`: a server identity refusal is thrown as itself. */
function unwrapFetchError(error: unknown): unknown {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth++) {
    if (cause instanceof ServerIdentityError) return cause
  }
  return error
}

/** Create the call side of one service. */
export function createServiceClient(settings: ServiceClientSettings): ServiceClient {
  const { name, service, tokens, dpop, connections, subjectOf } = settings
  const now = settings.now ?? Date.now
  const nonces = new DpopNonceMemory()
  const ath = createAthMemo()
  const emit: ClientEventHook = (event) => {
    try {
      settings.emit(event)
    } catch {
      // A hook must not throw; if it does, the call goes on.
    }
  }
  const retry = (reason: 'use_dpop_nonce' | 'invalid_token'): void => emit({ type: 'retry', time: now(), service: name, reason })

  const tokenRequestFor = (onBehalfOf: unknown): TokenRequest => {
    const base = { service: name, resource: service.resource, scopes: service.scopes }
    if (onBehalfOf === undefined || onBehalfOf === null) return base
    const subject = subjectOf(onBehalfOf)
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

  const urlOf = (input: string | URL): URL => {
    const url = new URL(input, service.url)
    if (url.origin !== service.origin) {
      throw new TypeError(`Callsign: a request of service "${name}" must go to ${service.origin}: its token is for that service only`)
    }
    return url
  }

  const authorize = async (method: string, url: URL, token: IssuedToken): Promise<ServiceHeaders> => {
    const authorization = `${token.scheme} ${token.value}`
    if (dpop === undefined) return { authorization }
    const proof = await createProof(await dpop, { method, url, accessToken: token.value, nonce: nonces.get(service.origin) }, ath, now)
    return { authorization, dpop: proof }
  }

  const refusal = async (response: Response, challenges: ReturnType<typeof parseChallenges>): Promise<ServiceRefusedError> => {
    const problem = isProblemResponse(response.headers.get('content-type')) ? await readProblem(response.body) : (await discard(response), undefined)
    return new ServiceRefusedError({ service: name, status: response.status, challenges, ...(problem === undefined ? {} : { problem }) })
  }

  async function serviceFetch(input: string | URL | Request, init: ServiceRequestInit = {}): Promise<Response> {
    const { onBehalfOf, ...requestInit } = init
    const fromRequest = input instanceof Request ? input : undefined
    const url = urlOf(fromRequest ? fromRequest.url : (input as string | URL))
    const method = normalizeMethod(requestInit.method ?? fromRequest?.method ?? 'GET')
    const headers = new Headers(requestInit.headers ?? fromRequest?.headers)
    const body = await prepareBody(requestInit.body !== undefined ? requestInit.body : fromRequest?.body)
    if (body.contentType !== null && !headers.has('content-type')) headers.set('content-type', body.contentType)
    const signal = requestInit.signal ?? fromRequest?.signal
    const tokenRequest = tokenRequestFor(onBehalfOf)
    await connections.refresh()
    let nonceRetried = false
    let tokenRetried = false
    while (true) {
      const token = await tokens.get(tokenRequest)
      const auth = await authorize(method, url, token)
      headers.set('authorization', auth.authorization)
      if (auth.dpop !== undefined) headers.set('dpop', auth.dpop)
      let response
      try {
        response = await undiciFetch(url, {
          method,
          headers: [...headers],
          body: body.bytes ?? body.stream ?? null,
          redirect: 'manual',
          dispatcher: connections.dispatcher,
          ...(body.stream ? { duplex: 'half' as const } : {}),
          ...(signal ? { signal } : {}),
        })
      } catch (error) {
        throw unwrapFetchError(error)
      }
      const nonce = nonces.remember(service.origin, response.headers.get('dpop-nonce'))
      if (response.status !== 401 && response.status !== 403) return toStandardResponse(response, url)
      const challenges = parseChallenges(response.headers.get('www-authenticate'))
      const error = response.status === 401 ? challengeError(challenges) : undefined
      const replayable = body.stream === undefined
      if (error === 'use_dpop_nonce' && dpop !== undefined && nonce !== undefined && !nonceRetried && replayable) {
        nonceRetried = true
        retry('use_dpop_nonce')
        await discard(response)
        continue
      }
      // The refused token is dropped even when the call cannot be retried: the next call asks for a new one.
      if (error === 'invalid_token' && !tokenRetried) tokens.invalidate(tokenRequest, token)
      if (error === 'invalid_token' && !tokenRetried && replayable) {
        tokenRetried = true
        retry('invalid_token')
        await discard(response)
        continue
      }
      if (response.status === 401 || challenges.length > 0 || isProblemResponse(response.headers.get('content-type'))) {
        throw await refusal(response as unknown as Response, challenges)
      }
      return toStandardResponse(response, url)
    }
  }

  return {
    fetch: serviceFetch,
    async headers(request) {
      if (typeof request !== 'object' || request === null) throw new TypeError('Callsign: headers() needs { method, url }')
      if (typeof request.method !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(request.method)) {
        throw new TypeError('Callsign: headers() needs the HTTP method as a string (e.g. "GET")')
      }
      const url = urlOf(request.url)
      if (request.dpopNonce !== undefined) nonces.remember(service.origin, request.dpopNonce)
      const token = await tokens.get(tokenRequestFor(request.onBehalfOf))
      return authorize(request.method, url, token)
    },
    dispatcher(options = {}) {
      const tokenRequest = tokenRequestFor(options.onBehalfOf)
      const interceptor: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
        const url = new URL(opts.path, opts.origin)
        if (url.origin !== service.origin) return dispatch(opts, handler)
        const send = async (): Promise<void> => {
          await connections.refresh()
          const token = await tokens.get(tokenRequest)
          const auth = await authorize(opts.method, url, token)
          dispatch(
            { ...opts, headers: withHeaders(opts.headers, auth) },
            nonceListener(handler, (value) => nonces.remember(service.origin, value)),
          )
        }
        send().catch((error: unknown) => handler.onResponseError?.(null as never, error as Error))
        return true
      }
      return connections.dispatcher.compose(interceptor)
    },
  }
}

/** A standard (global) `Response` for undici's own, with its `url`. */
function toStandardResponse(response: Awaited<ReturnType<typeof undiciFetch>>, url: URL): Response {
  const standard = new Response(NULL_BODY_STATUSES.has(response.status) ? null : (response.body as ReadableStream<Uint8Array> | null), {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
  })
  Object.defineProperty(standard, 'url', { value: url.href })
  return standard
}

/** `headers` of dispatch options (object, flat array or iterable of pairs) with `extra` set (replacing any of the same name). */
function withHeaders(headers: Dispatcher.DispatchOptions['headers'], extra: ServiceHeaders): Record<string, string | string[]> {
  const merged: Record<string, string | string[]> = {}
  const add = (name: string, value: string | string[] | undefined): void => {
    if (value === undefined) return
    const key = name.toLowerCase()
    const existing = merged[key]
    merged[key] = existing === undefined ? value : ([] as string[]).concat(existing, value)
  }
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) add(String(headers[i]), String(headers[i + 1]))
  } else if (headers && typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name, value] of headers as Iterable<[string, string | string[] | undefined]>) add(name, value)
  } else if (headers) {
    for (const [name, value] of Object.entries(headers)) add(name, value as string | string[] | undefined)
  }
  delete merged.authorization
  delete merged.dpop
  merged.authorization = extra.authorization
  if (extra.dpop !== undefined) merged.dpop = extra.dpop
  return merged
}

/** A handler that passes everything on to `handler` and reads the response's `DPoP-Nonce`. */
function nonceListener(handler: Dispatcher.DispatchHandler, remember: (nonce: string | undefined) => void): Dispatcher.DispatchHandler {
  return {
    onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
    onRequestUpgrade: (controller, statusCode, headers, socket) => handler.onRequestUpgrade?.(controller, statusCode, headers, socket),
    onResponseStart(controller, statusCode, headers, statusMessage) {
      const nonce = headers['dpop-nonce']
      remember(Array.isArray(nonce) ? nonce[0] : nonce)
      return handler.onResponseStart?.(controller, statusCode, headers, statusMessage)
    },
    onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
    onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
    onResponseError: (controller, error) => handler.onResponseError?.(controller, error),
  }
}

/**
 * The HTTP pieces of a service call that do not depend on tokens: request bodies that can be sent
 * again, the method as fetch sends it, why a request got no answer (network or TLS), and, for
 * `dispatcher()`, dispatch headers with the authorization added and a handler that reads nonces
 * and types failures.
 */
import type { Dispatcher, fetch as undiciFetch } from 'undici'

/** A request body that can be sent again as is: bytes and the content type fetch would give them. */
export interface PreparedBody {
  readonly bytes: Uint8Array | undefined
  readonly stream: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | undefined
  readonly contentType: string | null
}

const isStream = (body: unknown): body is ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> =>
  body instanceof ReadableStream || (typeof body === 'object' && body !== null && Symbol.asyncIterator in body)

/** Strings, bytes, `URLSearchParams`, `Blob`s and `FormData` are read once into bytes (so a retry can send them again); streams are not. */
export async function prepareBody(body: unknown): Promise<PreparedBody> {
  if (body === undefined || body === null) return { bytes: undefined, stream: undefined, contentType: null }
  if (isStream(body)) return { bytes: undefined, stream: body, contentType: null }
  const encoded = new Response(body as ConstructorParameters<typeof Response>[0])
  return { bytes: new Uint8Array(await encoded.arrayBuffer()), stream: undefined, contentType: encoded.headers.get('content-type') }
}

/** Fetch upper-cases these methods only (others are sent as written): the proof's `htm` is what is sent. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])
export const normalizeMethod = (method: string): string => (NORMALIZED_METHODS.has(method.toUpperCase()) ? method.toUpperCase() : method)

/** Discard a response body (so its connection can be reused). */
export const discard = (response: { body: ReadableStream | null }): Promise<void> => response.body?.cancel().catch(() => {}) ?? Promise.resolve()

/** undici's own `Response`. */
export type UndiciResponse = Awaited<ReturnType<typeof undiciFetch>>

/** `headers` of dispatch options (object, flat array or iterable of pairs) with `extra` set (replacing any of the same name). */
export function withHeaders(
  headers: Dispatcher.DispatchOptions['headers'],
  extra: { authorization: string; dpop?: string },
): Record<string, string | string[]> {
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

/** Certificate verification errors of TLS (OpenSSL's names, as Node reports them in `code`). */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
])

/** Whether `code` is a TLS or certificate error (`ERR_TLS_CERT_ALTNAME_INVALID`, `ERR_SSL_*`, `CERT_HAS_EXPIRED`, ...). */
const isTlsCode = (code: string): boolean => CERTIFICATE_ERRORS.has(code) || /^ERR_(SSL|TLS)_/.test(code)

/**
 * Why a request failed below HTTP, from the `code`s along its cause chain: `'tls'` when one is a
 * TLS or certificate error, else `'network'`; `code` is the innermost one (the most precise).
 */
export function transportFailure(error: unknown): { reason: 'network' | 'tls'; code: string | undefined } {
  let code: string | undefined
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    const value = (cause as { code?: unknown }).code
    if (typeof value !== 'string' || !/^[A-Z0-9_]{1,64}$/.test(value)) continue
    if (isTlsCode(value)) return { reason: 'tls', code: value }
    code = value
  }
  return { reason: 'network', code }
}

/** A handler that passes everything on to `handler`, reads the response's `DPoP-Nonce` and hands errors through `failure`. */
export function dispatchHandler(
  handler: Dispatcher.DispatchHandler,
  { remember, failure }: { remember: (nonce: string | undefined) => void; failure: (error: Error) => Error },
): Dispatcher.DispatchHandler {
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
    onResponseError: (controller, error) => handler.onResponseError?.(controller, failure(error)),
  }
}

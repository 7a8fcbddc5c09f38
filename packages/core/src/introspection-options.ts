import { createPrivateKey, KeyObject, type webcrypto } from 'node:crypto'
import { signingAlgorithmOf } from './algorithms.js'
import { ClientTls, type ClientTlsOptions } from './internal/client-tls.js'
import { checkKeys, fail, isPlainObject, oneOf, optionKeys, parseSecureUrl, positive } from './internal/validate.js'

/**
 * How the resource server authenticates to the introspection endpoint: `'client_secret_basic'`
 * (RFC 6749 §2.3.1), `'private_key_jwt'` (RFC 7523 §2.2), or `'tls_client_auth'` /
 * `'self_signed_tls_client_auth'` (RFC 8705 §2).
 */
export type IntrospectionAuthMethod = 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth'

/** RFC 7662 JSON answers, or RFC 9701 signed (JWT) answers. */
export type IntrospectionResponse = 'json' | 'jwt'

/** Which tokens an issuer's introspection receives: opaque ones only, or its JWTs too. */
export type IntrospectedTokens = 'opaque' | 'all'

/** RFC 7662 introspection of opaque access tokens. Durations in seconds. */
export interface IntrospectionOptions {
  /**
   * The introspection endpoint: https (http only on loopback). When absent, `introspection_endpoint`
   * is discovered from the issuer's metadata (RFC 8414 §2) at first use, then cached.
   */
  endpoint?: string
  /** This resource server's client id at the authorization server (RFC 7662 §2.1 requires it to authenticate). */
  clientId: string
  /**
   * How the resource server authenticates: `'client_secret_basic'` (default; RFC 6749 §2.3.1, with
   * `clientSecret`), `'private_key_jwt'` (RFC 7523 §2.2, a JWT assertion signed with `privateKey`),
   * or `'tls_client_auth'` / `'self_signed_tls_client_auth'` (RFC 8705 §2, the client certificate
   * in `tls`; `client_id` in the form, no secret).
   */
  auth?: IntrospectionAuthMethod
  /** Its client secret, sent with HTTP Basic (`client_secret_basic`). */
  clientSecret?: string
  /** Its private key for `private_key_jwt`: a `KeyObject`, a `CryptoKey` or a PEM string (EC P-256/384/521, Ed25519 or RSA). */
  privateKey?: KeyObject | webcrypto.CryptoKey | string
  /**
   * Its client certificate for `tls_client_auth` / `self_signed_tls_client_auth`: `cert` and `key`
   * (PEM, or `{ path }` re-read when the file changes, e.g. a rotated SVID), and `ca`, the CA(s)
   * the endpoint's server certificate must chain to (default: Node's root CAs). The endpoint is
   * then reached over `node:https` with this certificate (not through the `fetch` option); when
   * discovered, `mtls_endpoint_aliases.introspection_endpoint` (RFC 8705 §5) is preferred.
   */
  tls?: ClientTlsOptions
  /**
   * `'json'` (default): RFC 7662 JSON answers. `'jwt'`: ask for RFC 9701 signed answers
   * (`Accept: application/token-introspection+jwt`); a JWT answer is verified with the issuer's keys.
   */
  response?: IntrospectionResponse
  /** Timeout of one introspection request, body included. Default 5, at most 60. */
  timeoutSeconds?: number
  /** How long an active answer is reused (never beyond the token's `exp`). Default 60; 0 disables. */
  cacheSeconds?: number
  /** How long an inactive (or unacceptable) answer is reused. Default 10; 0 disables. */
  negativeCacheSeconds?: number
  /**
   * After a failed introspection (outage, timeout, bad answer), new tokens get 503 at once for
   * this long, without calling the endpoint; cached answers are still used. Also the `Retry-After`
   * of those 503s. Default 2; 0: every new token tries the endpoint.
   */
  failureBackoffSeconds?: number
  /** Most answers cached (keyed by SHA-256 of the token). Default 10000; 0 disables the cache. */
  maxEntries?: number
  /** `'opaque'` (default): only tokens that are not JWS-shaped. `'all'`: also this issuer's JWTs (by their unverified `iss`). */
  tokens?: IntrospectedTokens
}

/**
 * The HTTPS client that presents the resource server's certificate (RFC 8705 §2), as introspection
 * uses it: its `fetch`, a hook told when reloaded material is refused, and `close` at shutdown.
 */
export interface IntrospectionTransport {
  readonly fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>
  /** Called with the reason when reloaded certificate material is refused (the previous one stays in use). */
  onReloadFailure: ((reason: string) => void) | undefined
  /** Close idle connections. */
  close(): void
}

export type ResolvedIntrospectionAuth =
  | { method: 'client_secret_basic'; clientSecret: string }
  | { method: 'private_key_jwt'; privateKey: KeyObject; algorithm: string }
  | { method: 'tls_client_auth' | 'self_signed_tls_client_auth'; tls: IntrospectionTransport }

export interface ResolvedIntrospection {
  /** `undefined`: discovered from the issuer's metadata. */
  endpoint: URL | undefined
  clientId: string
  auth: ResolvedIntrospectionAuth
  response: IntrospectionResponse
  timeoutSeconds: number
  cacheSeconds: number
  negativeCacheSeconds: number
  failureBackoffSeconds: number
  maxEntries: number
  tokens: IntrospectedTokens
}

const INTROSPECTION_KEYS = optionKeys<IntrospectionOptions>()([
  'endpoint',
  'clientId',
  'auth',
  'clientSecret',
  'privateKey',
  'tls',
  'response',
  'timeoutSeconds',
  'cacheSeconds',
  'negativeCacheSeconds',
  'failureBackoffSeconds',
  'maxEntries',
  'tokens',
])
const AUTH_METHODS: readonly IntrospectionAuthMethod[] = ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth']

/** An issuer's `introspection` option (`option` names it, e.g. `issuers[0].introspection`). */
export function resolveIntrospection(value: unknown, option: string): ResolvedIntrospection {
  if (!isPlainObject(value)) return fail(option, 'must be an object { endpoint?, clientId, clientSecret | privateKey | tls }')
  checkKeys(value, INTROSPECTION_KEYS, option)
  const endpoint = value.endpoint === undefined ? undefined : parseSecureUrl(value.endpoint, `${option}.endpoint`)
  if (typeof value.clientId !== 'string' || value.clientId.length === 0)
    fail(`${option}.clientId`, 'must be a non-empty string (RFC 7662 §2.1: the resource server authenticates)')
  return Object.freeze({
    endpoint,
    clientId: value.clientId as string,
    auth: resolveAuth(value, option, endpoint),
    response: oneOf(value.response, `${option}.response`, ['json', 'jwt'] as const, 'json'),
    timeoutSeconds: positive(value.timeoutSeconds, `${option}.timeoutSeconds`, 5, { max: 60 }),
    cacheSeconds: positive(value.cacheSeconds, `${option}.cacheSeconds`, 60, { allowZero: true, max: 86_400 }),
    negativeCacheSeconds: positive(value.negativeCacheSeconds, `${option}.negativeCacheSeconds`, 10, { allowZero: true, max: 3600 }),
    failureBackoffSeconds: positive(value.failureBackoffSeconds, `${option}.failureBackoffSeconds`, 2, { allowZero: true, max: 300 }),
    maxEntries: positive(value.maxEntries, `${option}.maxEntries`, 10_000, { integer: true, allowZero: true, max: 1_000_000 }),
    tokens: oneOf(value.tokens, `${option}.tokens`, ['opaque', 'all'] as const, 'opaque'),
  })
}

/** `auth` and the one credential it uses; a credential of another method is refused (it would be ignored). */
function resolveAuth(value: Record<string, unknown>, option: string, endpoint: URL | undefined): ResolvedIntrospectionAuth {
  const method = oneOf(value.auth, `${option}.auth`, AUTH_METHODS, 'client_secret_basic')
  const unused = (...fields: ('clientSecret' | 'privateKey' | 'tls')[]): void => {
    for (const field of fields) if (value[field] !== undefined) fail(`${option}.${field}`, `is not used with auth: '${method}' (remove it)`)
  }
  if (method === 'client_secret_basic') {
    if (typeof value.clientSecret !== 'string' || value.clientSecret.length === 0)
      fail(`${option}.clientSecret`, 'must be a non-empty string (RFC 7662 §2.1: the resource server authenticates)')
    unused('privateKey', 'tls')
    return Object.freeze({ method, clientSecret: value.clientSecret as string })
  }
  if (method === 'private_key_jwt') {
    unused('clientSecret', 'tls')
    const privateKey = resolveAssertionKey(value.privateKey, `${option}.privateKey`)
    return Object.freeze({ method, privateKey, algorithm: assertionAlgorithm(privateKey, `${option}.privateKey`) })
  }
  unused('clientSecret', 'privateKey')
  if (value.tls === undefined) fail(`${option}.tls`, `is required with auth: '${method}': { cert, key, ca? } (RFC 8705 §2: the client certificate)`)
  // RFC 8705: the certificate is presented in the TLS handshake, so never over plain http.
  if (endpoint && endpoint.protocol !== 'https:') fail(`${option}.endpoint`, `must use https with auth: '${method}' (got ${JSON.stringify(endpoint.href)})`)
  return Object.freeze({ method, tls: new ClientTls(value.tls, `${option}.tls`) })
}

/** The JWS algorithm of a client assertion signed with `key`. */
function assertionAlgorithm(key: KeyObject, option: string): string {
  return signingAlgorithmOf(key) ?? fail(option, `must be an EC (P-256, P-384, P-521), Ed25519 or RSA private key (got ${key.asymmetricKeyType ?? 'unknown'})`)
}

function resolveAssertionKey(value: unknown, option: string): KeyObject {
  let key: KeyObject
  if (typeof value === 'string') {
    try {
      key = createPrivateKey(value)
    } catch (error) {
      return fail(option, `is not a PEM private key: ${(error as Error).message}`)
    }
  } else if (value instanceof KeyObject) {
    key = value
  } else if (Object.prototype.toString.call(value) === '[object CryptoKey]') {
    key = KeyObject.from(value as webcrypto.CryptoKey)
  } else {
    return fail(option, "must be a private KeyObject, CryptoKey or PEM string (required by auth: 'private_key_jwt')")
  }
  if (key.type !== 'private') fail(option, 'must be a private key')
  return key
}

/**
 * The token side's options (`issuer`, `clientId`, `auth` and its credential, `dpop`, timeouts and
 * cache sizes): their public type, their resolved form, and the resolver that validates them once,
 * when the client is created, with a `TypeError` naming the option.
 */
import { createPrivateKey, KeyObject, X509Certificate, type JsonWebKey, type webcrypto } from 'node:crypto'

/**
 * How the client authenticates at the token endpoint: `'tls_client_auth'` (RFC 8705 §2.1.1, the
 * workload certificate of `identity`), `'private_key_jwt'` (RFC 7523 §2.2, a JWT signed with
 * `privateKey`) or `'client_secret_basic'` (RFC 6749 §2.3.1, `clientSecret`).
 */
export type ClientAuthMethod = 'tls_client_auth' | 'private_key_jwt' | 'client_secret_basic'

/** A private key: PEM (PKCS#8, SEC1 or PKCS#1), a private JWK, a `KeyObject` or a `CryptoKey`. */
export type PrivateKeyInput = string | JsonWebKey | KeyObject | webcrypto.CryptoKey

/**
 * DPoP (RFC 9449): `true` generates a non-extractable ES256 key at start; `{ privateKey }` uses
 * that key (its algorithm inferred, or `alg`); `{ alg }` generates a key of that algorithm.
 * Default `false`: no DPoP (certificate-bound tokens with `identity`, else bearer tokens).
 */
export type DpopOption = boolean | { privateKey?: PrivateKeyInput; alg?: string }

/** The token side's slice of the client's options. Durations: `timeout` in ms, the others in seconds. */
export interface ClientTokenOptions {
  /** The authorization server's issuer identifier: https (http only for 127.0.0.1, localhost, ::1). RFC 8414 metadata, OpenID discovery as fallback. */
  issuer: string
  /** The client's id at the authorization server (often its SPIFFE ID). */
  clientId: string
  /** Client authentication at the token endpoint. */
  auth: ClientAuthMethod
  /** With `auth: 'client_secret_basic'` only. */
  clientSecret?: string
  /** With `auth: 'private_key_jwt'` only: the assertion's signing key; its `alg` inferred (EC: ES256/384/512, Ed25519: EdDSA, RSA: RS256, a JWK's own `alg`). */
  privateKey?: PrivateKeyInput
  /** The workload certificate (read by the call side's identity); required with `tls_client_auth`. */
  identity?: unknown
  /**
   * Whom the client trusts for the authorization server's TLS certificate: `'system'` (Node's
   * root CAs, for an authorization server with a public certificate), or the CA certificates as
   * PEM (one string or several). Default: `identity.ca` when given (one private CA for the
   * authorization server and the services), else Node's root CAs. Services are always checked
   * against `identity.ca`.
   */
  issuerCa?: 'system' | string | readonly string[]
  /** DPoP-bound tokens: see {@link DpopOption}. Default `false`. */
  dpop?: DpopOption
  /** Timeout of one authorization-server request (discovery or token), in ms. Default 5000, at most 60000. */
  timeout?: number
  /** Seconds before `exp` a background refresh starts (at most half the token's lifetime). Default 60. */
  refreshAhead?: number
  /** Seconds before `exp` a token is no longer sent (at most half the token's lifetime). Default 5. */
  expiryMargin?: number
  /** Most tokens cached (one per service, scopes, binding, user and certificate). Default 1000. */
  cacheSize?: number
}

/** The option keys the token side owns, for the client's unknown-option check. */
export const TOKEN_OPTION_KEYS = Object.freeze([
  'issuer',
  'clientId',
  'auth',
  'clientSecret',
  'privateKey',
  'identity',
  'issuerCa',
  'dpop',
  'timeout',
  'refreshAhead',
  'expiryMargin',
  'cacheSize',
] as const satisfies readonly (keyof ClientTokenOptions)[])

/** Client authentication, resolved. */
export type ResolvedClientAuth =
  | { readonly method: 'tls_client_auth' }
  | { readonly method: 'client_secret_basic'; readonly clientSecret: string }
  | { readonly method: 'private_key_jwt'; readonly privateKey: KeyObject; readonly alg: string; readonly kid: string | undefined }

/** DPoP, resolved: the key to use (`undefined`: generate one) and its algorithm. */
export interface ResolvedDpop {
  readonly privateKey: KeyObject | undefined
  readonly alg: string
}

/** The token side's options, validated and frozen. */
export interface TokenOptions {
  readonly issuer: URL
  /** The issuer is plain http on loopback: oauth4webapi's `allowInsecureRequests` is set (only then). */
  readonly insecure: boolean
  readonly clientId: string
  readonly auth: ResolvedClientAuth
  /** Whether an `identity` was given (its contents are the call side's). */
  readonly identity: boolean
  /** The authorization server's trust: `identity.ca` (else Node's roots), Node's roots, or these PEM certificates. */
  readonly issuerCa: 'identity' | 'system' | { readonly pem: string }
  readonly dpop: ResolvedDpop | undefined
  /** ms */
  readonly timeout: number
  /** seconds */
  readonly refreshAhead: number
  /** seconds */
  readonly expiryMargin: number
  readonly cacheSize: number
}

/** JWS algorithms a DPoP key may use (RFC 9449 §5: asymmetric only). */
export const DPOP_ALGORITHMS = Object.freeze(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'])

const AUTH_METHODS: readonly ClientAuthMethod[] = ['tls_client_auth', 'private_key_jwt', 'client_secret_basic']
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** Throw the construction error for `option`. */
export const fail = (option: string, message: string): never => {
  throw new TypeError(`Callsign: "${option}" ${message}`)
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Validate the token side's options (keys it does not own, such as `services` and `onEvent`, are
 * ignored: the client checks unknown keys against both halves' lists).
 * @throws TypeError naming the option and the fix, e.g. `Callsign: "issuer" must be an https URL`.
 */
export function resolveTokenOptions(options: Record<string, unknown>): TokenOptions {
  if (!isPlainObject(options)) return fail('options', 'must be an object')
  const { url: issuer, insecure } = resolveIssuer(options.issuer)
  if (typeof options.clientId !== 'string' || options.clientId.length === 0)
    fail('clientId', 'must be a non-empty string (the client id at the authorization server)')
  const identity = options.identity !== undefined
  return Object.freeze({
    issuer,
    insecure,
    clientId: options.clientId as string,
    auth: resolveAuth(options, identity),
    identity,
    issuerCa: resolveIssuerCa(options.issuerCa),
    dpop: resolveDpop(options.dpop, 'dpop'),
    timeout: positive(options.timeout, 'timeout', 5000, { max: 60_000, integer: true }),
    refreshAhead: positive(options.refreshAhead, 'refreshAhead', 60, { max: 86_400, allowZero: true }),
    expiryMargin: positive(options.expiryMargin, 'expiryMargin', 5, { max: 3600, allowZero: true }),
    cacheSize: positive(options.cacheSize, 'cacheSize', 1000, { max: 1_000_000, integer: true }),
  })
}

/** https, or http on a loopback host; no query, fragment or credentials (RFC 8414 §2). */
function resolveIssuer(value: unknown): { url: URL; insecure: boolean } {
  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined
  if (!url) return fail('issuer', "must be an https URL (the authorization server's issuer identifier)")
  const insecure = url.protocol === 'http:' && LOOPBACK.has(url.hostname)
  if (url.protocol !== 'https:' && !insecure) fail('issuer', 'must be an https URL (http only for 127.0.0.1, localhost or ::1)')
  if (url.search || url.hash || url.username || url.password) fail('issuer', 'must have no query, fragment or credentials (RFC 8414 §2)')
  return { url, insecure }
}

/** `issuerCa`: absent, `'system'`, or PEM certificates (each one parsed now). */
function resolveIssuerCa(value: unknown): TokenOptions['issuerCa'] {
  if (value === undefined) return 'identity'
  if (value === 'system') return 'system'
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]) : undefined
  if (!list || list.length === 0 || !list.every((pem) => typeof pem === 'string')) {
    return fail('issuerCa', "must be 'system' or the authorization server's CA certificates as PEM (a string or an array of strings)")
  }
  for (const pem of list as string[]) {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    if (blocks.length === 0) fail('issuerCa', 'must hold PEM certificates (-----BEGIN CERTIFICATE-----)')
    for (const block of blocks) {
      try {
        new X509Certificate(block)
      } catch {
        fail('issuerCa', 'holds a PEM certificate that cannot be read')
      }
    }
  }
  return Object.freeze({ pem: (list as string[]).join('\n') })
}

/** `auth` and the one credential it uses; a credential of another method is refused (it would be ignored). */
function resolveAuth(options: Record<string, unknown>, identity: boolean): ResolvedClientAuth {
  const method = options.auth
  if (!AUTH_METHODS.includes(method as ClientAuthMethod)) {
    fail('auth', `must be one of ${AUTH_METHODS.map((m) => `'${m}'`).join(', ')} (got ${JSON.stringify(method)})`)
  }
  const unused = (...fields: ('clientSecret' | 'privateKey')[]): void => {
    for (const field of fields) if (options[field] !== undefined) fail(field, `is not used with auth: '${method as string}' (remove it)`)
  }
  if (method === 'tls_client_auth') {
    unused('clientSecret', 'privateKey')
    if (!identity) fail('identity', "is required with auth: 'tls_client_auth' (RFC 8705 §2: the workload certificate)")
    return Object.freeze({ method })
  }
  if (method === 'client_secret_basic') {
    unused('privateKey')
    if (typeof options.clientSecret !== 'string' || options.clientSecret.length === 0) {
      fail('clientSecret', "must be a non-empty string (required by auth: 'client_secret_basic')")
    }
    return Object.freeze({ method, clientSecret: options.clientSecret as string })
  }
  unused('clientSecret')
  if (options.privateKey === undefined) fail('privateKey', "is required by auth: 'private_key_jwt' (PEM or JWK)")
  const privateKey = readPrivateKey(options.privateKey, 'privateKey')
  const jwk = options.privateKey as { alg?: unknown; kid?: unknown }
  const declared = isPlainObject(options.privateKey) && typeof jwk.alg === 'string' ? jwk.alg : undefined
  const alg = algorithmOf(privateKey, declared, 'privateKey')
  const kid = isPlainObject(options.privateKey) && typeof jwk.kid === 'string' ? jwk.kid : undefined
  return Object.freeze({ method: 'private_key_jwt', privateKey, alg, kid })
}

/** The `dpop` option (also `createDpopKey`'s argument): `undefined` when off. */
export function resolveDpop(value: unknown, option: string): ResolvedDpop | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return Object.freeze({ privateKey: undefined, alg: 'ES256' })
  if (!isPlainObject(value)) return fail(option, 'must be true, false or { privateKey?, alg? }')
  for (const key of Object.keys(value)) if (key !== 'privateKey' && key !== 'alg') fail(`${option}.${key}`, 'is not a known option (known: privateKey, alg)')
  if (value.alg !== undefined && !DPOP_ALGORITHMS.includes(value.alg as string)) {
    fail(`${option}.alg`, `must be one of ${DPOP_ALGORITHMS.join(', ')} (got ${JSON.stringify(value.alg)})`)
  }
  const declared = value.alg as string | undefined
  if (value.privateKey === undefined) return Object.freeze({ privateKey: undefined, alg: declared ?? 'ES256' })
  const privateKey = readPrivateKey(value.privateKey, `${option}.privateKey`)
  const jwkAlg = isPlainObject(value.privateKey) && typeof value.privateKey.alg === 'string' ? value.privateKey.alg : undefined
  return Object.freeze({ privateKey, alg: algorithmOf(privateKey, declared ?? jwkAlg, `${option}.privateKey`) })
}

/** A private `KeyObject` from PEM, a JWK, a `KeyObject` or a `CryptoKey`. */
function readPrivateKey(value: unknown, option: string): KeyObject {
  let key: KeyObject
  try {
    if (typeof value === 'string') key = createPrivateKey(value)
    else if (value instanceof KeyObject) key = value
    else if (Object.prototype.toString.call(value) === '[object CryptoKey]') key = KeyObject.from(value as webcrypto.CryptoKey)
    else if (isPlainObject(value)) key = createPrivateKey({ key: value as JsonWebKey, format: 'jwk' })
    else return fail(option, 'must be a private key: PEM, JWK, KeyObject or CryptoKey')
  } catch (error) {
    if (error instanceof TypeError && error.message.startsWith('Callsign:')) throw error
    return fail(option, 'is not a readable private key (PEM or private JWK)')
  }
  if (key.type !== 'private') fail(option, 'must be a private key')
  return key
}

/** The JWS algorithms a key can sign with, the first being the one inferred. */
function algorithmsOf(key: KeyObject): readonly string[] {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      const alg = curve === 'prime256v1' ? 'ES256' : curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : undefined
      return alg ? [alg] : []
    }
    case 'ed25519':
      return ['EdDSA', 'Ed25519']
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512']
    default:
      return []
  }
}

/** `declared` when the key can sign with it, else the key's own algorithm. */
function algorithmOf(key: KeyObject, declared: string | undefined, option: string): string {
  const possible = algorithmsOf(key)
  if (possible.length === 0) fail(option, `must be an EC (P-256, P-384, P-521), Ed25519 or RSA private key (got ${key.asymmetricKeyType ?? 'unknown'})`)
  if (declared === undefined) return possible[0]!
  if (!possible.includes(declared)) fail(option, `cannot sign with ${JSON.stringify(declared)} (a ${key.asymmetricKeyType} key: ${possible.join(', ')})`)
  return declared
}

/** A finite number > 0 (or >= 0 with `allowZero`), at most `max`, whole with `integer`; `fallback` when absent. */
function positive(value: unknown, option: string, fallback: number, limits: { max: number; integer?: boolean; allowZero?: boolean }): number {
  if (value === undefined) return fallback
  const { max, integer = false, allowZero = false } = limits
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0) ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    fail(option, `must be a ${integer ? 'whole ' : ''}number ${allowZero ? '>= 0' : '> 0'} and <= ${max} (got ${JSON.stringify(value)})`)
  }
  return value as number
}

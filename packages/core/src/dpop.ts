import { createHash } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, type JWK } from 'jose'
import { LRUCache } from 'lru-cache'
import { verifySignature } from './access-token.js'
import { algorithmsOf, DEFAULT_ALGORITHMS, type Algorithm } from './algorithms.js'
import { decodeJsonObject, jwsSegments } from './internal/jws.js'
import { checkKeys, fail, isPlainObject, oneOf, optionKeys, parseSecureUrl, positive, stringList } from './internal/validate.js'
import { importPublicKey, keyFitsAlgorithm, PRIVATE_MEMBERS, sameAlg } from './jwks.js'
import { withTimeout } from './internal/with-timeout.js'
import { AuthError, type AuthCheck } from './errors.js'
import { DpopNonces, type DpopNonceSource } from './dpop-nonce.js'
import { MemoryReplayStore, type ReplayStore } from './replay-store.js'

/**
 * DPoP (RFC 9449) acceptance.
 * - `'allowed'` (default): `Authorization: DPoP` with a proof is accepted next to Bearer.
 * - `'required'`: only DPoP-bound tokens with a valid proof are accepted.
 * - `'off'`: the `DPoP` scheme is not accepted (and not advertised).
 */
export type DpopMode = 'off' | 'allowed' | 'required'

export interface DpopOptions {
  mode?: DpopMode
  /** Algorithms accepted for proofs (advertised in `algs`). Default: all asymmetric ones. */
  algorithms?: Algorithm[]
  /** A proof's `iat` may be at most this old (plus `clockTolerance`); its `jti` is remembered this long. Default 60, at most 600. */
  maxProofAgeSeconds?: number
  /**
   * Public origin(s) of this service (`https://orders.example.com`), for the `htu` check behind
   * a proxy or when several host names reach the service. Default: the request's own scheme
   * (TLS or not) and `Host` header; `X-Forwarded-*` are never used.
   */
  origin?: string | string[]
  /**
   * Server nonces (RFC 9449 §8): proofs must carry a nonce the server issued (via `DPoP-Nonce`).
   * Stateless: a time-sliced HMAC under `secret` (at least 32 bytes; the same on every replica).
   * A nonce stays valid for its window and the next.
   */
  nonce?: DpopNonceOptions
  /** Where used proof `jti`s are remembered. Default: a process-local `MemoryReplayStore`; use `@callsign/redis` for replicas. */
  replayStore?: ReplayStore
  /** The replay store must answer within this time, or the request fails closed with 503. Default 500. */
  replayStoreTimeoutMs?: number
}

/** `dpop.nonce`: the HMAC secret of server nonces and how long each window lasts (default 300 s). */
export interface DpopNonceOptions {
  secret: string | Uint8Array
  windowSeconds?: number
}

export interface ResolvedDpop {
  mode: DpopMode
  algorithms: ReadonlySet<string>
  /** `algs` challenge parameter value. */
  algs: string
  maxProofAgeSeconds: number
  origins: readonly string[] | undefined
  nonces: DpopNonceSource | undefined
  replayStore: ReplayStore
  replayStoreTimeoutMs: number
}

/** Settings the proof check needs (resolved from `dpop` options). */
export interface DpopCheckConfig {
  algorithms: ReadonlySet<string>
  maxProofAgeSeconds: number
  clockToleranceSeconds: number
  now: () => number
  nonces: DpopNonceSource | undefined
  replayStore: ReplayStore
  replayStoreTimeoutMs: number
}

/** What the request says the proof must match. */
export interface DpopExpectation {
  method: string
  /** The request URI without query and fragment, normalized (see {@link normalizeHtu}). */
  htu: string
  accessToken: string
  /** The token's `cnf.jkt`. */
  jkt: string
}

/** Largest proof accepted. */
export const MAX_PROOF_LENGTH = 8 * 1024

export const invalidProof = (description: string, check: AuthCheck, cause?: unknown): AuthError =>
  new AuthError('invalid_dpop_proof', description, cause === undefined ? { check } : { check, cause })

/**
 * Normalize an `htu` per RFC 9449 §4.3 (RFC 3986 §6.2.2/§6.2.3 syntax- and scheme-based):
 * scheme and host lower-cased, default port removed, query and fragment dropped, empty path "/",
 * percent-encoded unreserved characters decoded and other percent-encodings upper-cased.
 * Returns `undefined` for something that is not an absolute http(s) URI.
 */
export function normalizeHtu(value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.username || url.password) return undefined
  // RFC 3986 §6.2.2.1/§6.2.2.2: percent-encoded unreserved characters decoded, hex digits upper-cased.
  const path = url.pathname.replace(/%([0-9A-Fa-f]{2})/g, (_match, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16))
    return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${hex.toUpperCase()}`
  })
  return `${url.protocol}//${url.host}${path}`
}

/**
 * Check a DPoP proof (RFC 9449 §4.3) against the request and the access token, in order:
 * one JWS; `typ` `dpop+jwt`; `alg` asymmetric and allowed; `jwk` a public key (any private member
 * refused); signature under that `jwk`; `htm`; `htu`; `iat` within the window (past and future);
 * `jti` present; `ath` = base64url(SHA-256(token)); RFC 7638 thumbprint of `jwk` = `cnf.jkt`;
 * the server nonce when required (§8); finally the `jti` is recorded, so only a proof that passed
 * every other check can use up replay-store space. Throws `AuthError`.
 */
export async function verifyDpopProof(proof: string, expected: DpopExpectation, config: DpopCheckConfig): Promise<void> {
  if (proof.length === 0 || proof.length > MAX_PROOF_LENGTH) throw invalidProof('malformed DPoP proof', 'binding')
  // Canonical base64url in every segment: one proof has exactly one spelling.
  const parts = jwsSegments(proof)
  if (!parts) throw invalidProof('malformed DPoP proof', 'binding')
  const { alg, thumbprint, key } = await readProofHeader(parts[0]!, config.algorithms)
  if (!verifySignature(alg, key, proof.slice(0, proof.length - parts[2]!.length - 1), parts[2]!)) throw invalidProof('DPoP proof signature invalid', 'binding')
  const payload = decodeProofPayload(parts[1]!)
  const now = config.now()
  const jti = checkProofClaims(payload, expected, config, now)
  const ath = createHash('sha256').update(expected.accessToken).digest('base64url')
  if (payload.ath !== ath) throw invalidProof('DPoP proof ath does not match the access token', 'binding')
  if (thumbprint !== expected.jkt) throw new AuthError('invalid_token', 'token is bound to another DPoP key', { check: 'binding' })

  if (config.nonces && !config.nonces.isValid(payload.nonce)) {
    throw new AuthError('use_dpop_nonce', 'a fresh DPoP nonce is required', { check: 'binding' })
  }
  // Replay: identifiers are unique per key (RFC 9449 §11.1); hash to bound the stored key size.
  const replayKey = createHash('sha256').update(thumbprint).update('\0').update(jti).digest('base64url')
  const ttlSeconds = config.maxProofAgeSeconds + 2 * config.clockToleranceSeconds
  let fresh: boolean
  try {
    const ms = config.replayStoreTimeoutMs
    fresh = await withTimeout(() => config.replayStore.markUsed(replayKey, ttlSeconds), ms, `replay store did not answer within ${ms} ms`)
  } catch (error) {
    throw new AuthError('replay_store_unavailable', 'DPoP replay protection is temporarily unavailable', {
      retryAfterSeconds: 1,
      cause: error,
      check: 'binding',
    })
  }
  if (!fresh) throw invalidProof('DPoP proof has already been used', 'binding')
}

/** The proof's claims as a JSON object with `iat`, `jti`, `htm` and `htu` present. */
function decodeProofPayload(segment: string): Record<string, unknown> {
  let payload: Record<string, unknown>
  try {
    payload = decodeJsonObject(segment)
  } catch (error) {
    throw invalidProof('malformed DPoP proof', 'binding', error)
  }
  for (const claim of ['iat', 'jti', 'htm', 'htu'] as const) {
    if (payload[claim] === undefined) throw invalidProof('malformed DPoP proof', 'binding')
  }
  return payload
}

/** `exp`/`nbf` when present, `htm`, `htu`, the `iat` window and `jti` (returned), in that order. */
function checkProofClaims(payload: Record<string, unknown>, expected: DpopExpectation, config: DpopCheckConfig, now: number): string {
  const { exp, nbf } = payload
  if (
    (exp !== undefined && (typeof exp !== 'number' || exp <= now / 1000 - config.clockToleranceSeconds)) ||
    (nbf !== undefined && (typeof nbf !== 'number' || nbf > now / 1000 + config.clockToleranceSeconds))
  ) {
    throw invalidProof('malformed DPoP proof', 'binding')
  }

  if (payload.htm !== expected.method) throw invalidProof('DPoP proof htm does not match the request method', 'binding')
  if (typeof payload.htu !== 'string' || normalizeHtu(payload.htu) !== expected.htu)
    throw invalidProof('DPoP proof htu does not match the request URI', 'binding')
  const iat = payload.iat
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('malformed DPoP proof iat', 'binding')
  const ageSeconds = now / 1000 - iat
  if (ageSeconds > config.maxProofAgeSeconds + config.clockToleranceSeconds) throw invalidProof('DPoP proof is too old', 'binding')
  if (ageSeconds < -config.clockToleranceSeconds) throw invalidProof('DPoP proof is issued in the future', 'binding')
  const jti = payload.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw invalidProof('malformed DPoP proof jti', 'binding')
  return jti
}

interface ProofHeader {
  alg: string
  /** RFC 7638 thumbprint of `jwk`. */
  thumbprint: string
  key: KeyObject
}

// Checked proof headers by their exact base64url text. A client signs every proof with one key, so
// its proofs share one header (`typ`, `alg`, `jwk`): decoded, thumbprinted and imported once. The
// text is the whole input of these checks, so a hit is what checking it again would give; only
// the guard's algorithm allowlist is applied again on every use.
const proofHeaders = new LRUCache<string, ProofHeader>({ max: 1000 })

/**
 * The proof's protected header, checked: JSON object, `typ` `dpop+jwt`, `alg` allowed, `jwk` a
 * public key (no private member) fit for `alg` (type, curve, one encoding, RSA size, `use`, `alg`),
 * no `crit` or `b64`; with its thumbprint (jose) and the imported key. Throws `AuthError`.
 */
async function readProofHeader(segment: string, algorithms: ReadonlySet<string>): Promise<ProofHeader> {
  const cached = proofHeaders.get(segment)
  if (cached) {
    if (!algorithms.has(cached.alg)) throw invalidProof('DPoP proof algorithm not allowed', 'binding')
    return cached
  }
  let header: Record<string, unknown>
  try {
    header = decodeJsonObject(segment)
  } catch (error) {
    throw invalidProof('malformed DPoP proof', 'binding', error)
  }
  if (typeof header.typ !== 'string' || header.typ.toLowerCase() !== 'dpop+jwt') throw invalidProof('DPoP proof typ must be dpop+jwt', 'binding')
  const alg = header.alg
  if (typeof alg !== 'string' || !algorithms.has(alg)) throw invalidProof('DPoP proof algorithm not allowed', 'binding')
  const jwk = header.jwk as Record<string, unknown> | undefined
  if (!isPlainObject(jwk)) throw invalidProof('DPoP proof has no jwk', 'binding')
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) throw invalidProof('DPoP proof jwk contains a private key', 'binding')
  if (header.crit !== undefined || header.b64 !== undefined) throw invalidProof('malformed DPoP proof', 'binding')
  let thumbprint: string
  try {
    thumbprint = await calculateJwkThumbprint(jwk as JWK, 'sha256')
  } catch (error) {
    throw invalidProof('malformed DPoP proof jwk', 'binding', error)
  }
  const key = proofKey(jwk, alg)
  if (!key) throw invalidProof('malformed DPoP proof jwk', 'binding')
  const checked = { alg, thumbprint, key }
  proofHeaders.set(segment, checked)
  return checked
}

/** Largest RSA proof key, in bits: the client picks the key, so it must not pick the cost of verifying it. */
const MAX_PROOF_RSA_BITS = 4096

/**
 * The proof's public `jwk` as a node:crypto key fit for `alg` (type, curve, `use`, `alg`), or
 * undefined. Its encoding must be the one its key allows (exact EC and Ed25519 lengths, minimal RSA
 * integers: see `checkJwkEncoding`), or one key would have several thumbprints to match `cnf.jkt`
 * and key replay entries with; RSA keys from 2048 to {@link MAX_PROOF_RSA_BITS} bits.
 */
function proofKey(jwk: Record<string, unknown>, alg: string): KeyObject | undefined {
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined
  if (jwk.alg !== undefined && (typeof jwk.alg !== 'string' || !sameAlg(jwk.alg, alg))) return undefined
  if (!keyFitsAlgorithm(jwk, alg)) return undefined
  return importPublicKey(jwk, { maxRsaBits: MAX_PROOF_RSA_BITS }) ?? undefined
}

const DPOP_KEYS = optionKeys<DpopOptions>()(['mode', 'algorithms', 'maxProofAgeSeconds', 'origin', 'nonce', 'replayStore', 'replayStoreTimeoutMs'])
const NONCE_KEYS = optionKeys<DpopNonceOptions>()(['secret', 'windowSeconds'])
const DPOP_MODES: readonly DpopMode[] = ['off', 'allowed', 'required']

/** The `dpop` option with its defaults; `now` is the guard's clock (server nonces are time-sliced). */
export function resolveDpop(value: unknown, now: () => number, storeClock?: () => number): ResolvedDpop {
  const input = (value ?? {}) as Record<string, unknown>
  if (!isPlainObject(input)) return fail('dpop', 'must be an object')
  checkKeys(input, DPOP_KEYS, 'dpop')
  const algorithms = input.algorithms === undefined ? new Set<string>(DEFAULT_ALGORITHMS) : algorithmsOf(input.algorithms, 'dpop.algorithms')
  const origins = input.origin === undefined ? undefined : resolveOrigins(input.origin)
  const nonces = input.nonce === undefined ? undefined : resolveNonces(input.nonce, now)
  const store = input.replayStore as ReplayStore | undefined
  if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.markUsed !== 'function')) {
    fail('dpop.replayStore', 'must implement markUsed(key, ttlSeconds)')
  }
  const mode = oneOf(input.mode, 'dpop.mode', DPOP_MODES, 'allowed')
  return Object.freeze({
    mode,
    algorithms,
    algs: [...algorithms].join(' '),
    maxProofAgeSeconds: positive(input.maxProofAgeSeconds, 'dpop.maxProofAgeSeconds', 60, { max: 600 }),
    origins: origins && Object.freeze(origins),
    nonces,
    replayStore: store ?? new MemoryReplayStore(storeClock ? { now: storeClock } : {}),
    replayStoreTimeoutMs: positive(input.replayStoreTimeoutMs, 'dpop.replayStoreTimeoutMs', 500, { max: 30_000 }),
  })
}

/** `dpop.origin`: https origins (scheme, host, port), no path. */
function resolveOrigins(value: unknown): string[] {
  return stringList(value, 'dpop.origin').map((origin) => {
    const url = parseSecureUrl(origin, 'dpop.origin')
    if (url.pathname !== '/' || url.search) fail('dpop.origin', `must be an origin (scheme://host[:port]) without a path: ${JSON.stringify(origin)}`)
    return url.origin
  })
}

function resolveNonces(value: unknown, now: () => number): DpopNonces {
  if (!isPlainObject(value)) return fail('dpop.nonce', 'must be { secret, windowSeconds? }')
  checkKeys(value, NONCE_KEYS, 'dpop.nonce')
  const secret =
    typeof value.secret === 'string' ? Buffer.from(value.secret, 'utf8') : value.secret instanceof Uint8Array ? Buffer.from(value.secret) : undefined
  if (!secret || secret.length < 32) fail('dpop.nonce.secret', 'must be a string or bytes of at least 32 bytes, the same on every replica')
  return new DpopNonces(secret!, positive(value.windowSeconds, 'dpop.nonce.windowSeconds', 300, { max: 86_400 }), now)
}

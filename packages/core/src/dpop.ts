import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, errors, jwtVerify, type JWK } from 'jose'
import { AuthError } from './errors.js'
import type { DpopNonces } from './dpop-nonce.js'
import type { ReplayStore } from './replay-store.js'

/** Settings the proof check needs (resolved from `dpop` options). */
export interface DpopCheckConfig {
  algorithms: ReadonlySet<string>
  maxProofAgeSeconds: number
  clockToleranceSeconds: number
  now: () => number
  nonces: DpopNonces | undefined
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
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'r', 't']

export const invalidProof = (description: string, cause?: unknown): AuthError =>
  new AuthError('invalid_dpop_proof', description, cause === undefined ? {} : { cause })

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
  if (proof.length === 0 || proof.length > MAX_PROOF_LENGTH) throw invalidProof('malformed DPoP proof')
  const parts = proof.split('.')
  if (parts.length !== 3 || parts.some((part) => part.length === 0)) throw invalidProof('malformed DPoP proof')
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(proof)
  } catch (error) {
    throw invalidProof('malformed DPoP proof', error)
  }
  if (typeof header.typ !== 'string' || header.typ.toLowerCase() !== 'dpop+jwt') throw invalidProof('DPoP proof typ must be dpop+jwt')
  if (typeof header.alg !== 'string' || !config.algorithms.has(header.alg)) throw invalidProof('DPoP proof algorithm not allowed')
  const jwk = header.jwk as Record<string, unknown> | undefined
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw invalidProof('DPoP proof has no jwk')
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) throw invalidProof('DPoP proof jwk contains a private key')

  const now = config.now()
  let payload: Record<string, unknown>
  try {
    const result = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: [header.alg],
      requiredClaims: ['iat', 'jti', 'htm', 'htu'],
      currentDate: new Date(now),
      clockTolerance: config.clockToleranceSeconds,
    })
    payload = result.payload as Record<string, unknown>
  } catch (error) {
    if (error instanceof errors.JWSSignatureVerificationFailed) throw invalidProof('DPoP proof signature invalid', error)
    throw invalidProof('malformed DPoP proof', error)
  }

  if (payload.htm !== expected.method) throw invalidProof('DPoP proof htm does not match the request method')
  if (typeof payload.htu !== 'string' || normalizeHtu(payload.htu) !== expected.htu) throw invalidProof('DPoP proof htu does not match the request URI')
  const iat = payload.iat
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('malformed DPoP proof iat')
  const ageSeconds = now / 1000 - iat
  if (ageSeconds > config.maxProofAgeSeconds + config.clockToleranceSeconds) throw invalidProof('DPoP proof is too old')
  if (ageSeconds < -config.clockToleranceSeconds) throw invalidProof('DPoP proof is issued in the future')
  const jti = payload.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw invalidProof('malformed DPoP proof jti')

  const ath = createHash('sha256').update(expected.accessToken).digest('base64url')
  if (payload.ath !== ath) throw invalidProof('DPoP proof ath does not match the access token')
  let thumbprint: string
  try {
    thumbprint = await calculateJwkThumbprint(jwk as JWK, 'sha256')
  } catch (error) {
    throw invalidProof('malformed DPoP proof jwk', error)
  }
  if (thumbprint !== expected.jkt) throw new AuthError('invalid_token', 'token is bound to another DPoP key')

  if (config.nonces && !config.nonces.isValid(payload.nonce)) {
    throw new AuthError('use_dpop_nonce', 'a fresh DPoP nonce is required')
  }

  // Replay: identifiers are unique per key (RFC 9449 §11.1); hash to bound the stored key size.
  const replayKey = createHash('sha256').update(thumbprint).update('\0').update(jti).digest('base64url')
  const ttlSeconds = config.maxProofAgeSeconds + 2 * config.clockToleranceSeconds
  let fresh: boolean
  try {
    fresh = await withTimeout(Promise.resolve(config.replayStore.markUsed(replayKey, ttlSeconds)), config.replayStoreTimeoutMs)
  } catch (error) {
    throw new AuthError('replay_store_unavailable', 'DPoP replay protection is temporarily unavailable', { retryAfterSeconds: 1, cause: error })
  }
  if (!fresh) throw invalidProof('DPoP proof has already been used')
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`replay store did not answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

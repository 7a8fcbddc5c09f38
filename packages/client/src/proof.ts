/**
 * DPoP proofs for calls to services (RFC 9449 §4): one fresh proof per request, signed with the
 * client's DPoP key, and the nonces services hand out (§8), remembered per origin.
 */
import { createHash, randomUUID, sign } from 'node:crypto'
import { base64url } from 'jose'
import type { DpopKey } from './contracts.js'
import { proofSignerOf } from './dpop-key.js'

/** What a proof is for. */
export interface ProofRequest {
  /** The HTTP method exactly as sent (`htm`). */
  readonly method: string
  /** The request URL; `htu` is it without query and fragment. */
  readonly url: URL
  /** The access token sent with it (`ath`). */
  readonly accessToken: string
  /** The service's latest nonce, when it sent one. */
  readonly nonce: string | undefined
}

/** The `htu` of a request (RFC 9449 §4.2): its URL without query and fragment. */
export const htuOf = (url: URL): string => `${url.origin}${url.pathname}`

/**
 * `ath` (RFC 9449 §4.2): base64url(SHA-256(token)). The last token's value is kept, so a cached
 * token is hashed once, not per request.
 */
export function createAthMemo(): (accessToken: string) => string {
  let last: { token: string; ath: string } | undefined
  return (accessToken) => {
    if (last?.token !== accessToken) last = { token: accessToken, ath: createHash('sha256').update(accessToken).digest('base64url') }
    return last.ath
  }
}

/**
 * Sign a DPoP proof (RFC 9449 §4.2): header `typ: dpop+jwt`, `alg` of the key and its public
 * `jwk`; claims `htm`, `htu`, `iat` (now, seconds), a random `jti` (a UUID), `ath` and, when given, `nonce`.
 * Signed with node:crypto and the key's cached `KeyObject` (the header is encoded once per key).
 *
 * @example
 * createProof(key, { method: 'GET', url: new URL('https://orders.internal/orders?x=1'), accessToken, nonce: undefined }, ath)
 */
export function createProof(key: DpopKey, request: ProofRequest, ath: (token: string) => string, now: () => number = Date.now): string {
  const claims: Record<string, string | number> = {
    htm: request.method,
    htu: htuOf(request.url),
    iat: Math.floor(now() / 1000),
    // 122 random bits; randomUUID draws from a pool of entropy (randomBytes(16) per proof measured 20 times slower).
    jti: randomUUID(),
    ath: ath(request.accessToken),
  }
  if (request.nonce !== undefined) claims.nonce = request.nonce
  const signer = proofSignerOf(key)
  const signingInput = `${signer.header}.${base64url.encode(JSON.stringify(claims))}`
  return `${signingInput}.${base64url.encode(sign(signer.hash, Buffer.from(signingInput), signer.key))}`
}

/** RFC 9449 §8.1: nonce = 1*NQCHAR; longer values than this are not kept. */
const NONCE = /^[\x21\x23-\x5b\x5d-\x7e]{1,512}$/

/**
 * The last `DPoP-Nonce` each origin sent (RFC 9449 §8.2: a server may send a new one with any
 * response). Values that are not valid nonces are ignored. Bounded: a client calls a fixed set
 * of service origins, and at most 100 are kept.
 */
export class DpopNonceMemory {
  readonly #nonces = new Map<string, string>()

  /** The nonce to put in the next proof for `origin`. */
  get(origin: string): string | undefined {
    return this.#nonces.get(origin)
  }

  /** Remember the `DPoP-Nonce` of a response from `origin`; returns it when it was a valid nonce. */
  remember(origin: string, nonce: string | null | undefined): string | undefined {
    if (typeof nonce !== 'string' || !NONCE.test(nonce)) return undefined
    if (!this.#nonces.has(origin) && this.#nonces.size >= 100) this.#nonces.delete(this.#nonces.keys().next().value!)
    this.#nonces.set(origin, nonce)
    return nonce
  }
}

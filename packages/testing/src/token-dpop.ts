import { randomBytes } from 'node:crypto'
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify, type JWK } from 'jose'
import { TokenError } from './token-error.js'

/**
 * Algorithms of the DPoP proofs the token endpoint accepts (`dpop_signing_alg_values_supported`):
 * the asymmetric ones {@link createDpopKey} and oauth4webapi sign with.
 *
 * @internal
 */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256']

/** How far a proof's `iat` may be from now, in seconds (RFC 9449 §11.1 leaves the window to the server). */
const IAT_WINDOW_SECONDS = 60

/**
 * The token endpoint's DPoP side (RFC 9449 §5): checks proofs, remembers their `jti`s for the
 * `iat` window, and holds the current server nonce (§8).
 *
 * @internal
 */
export class TokenDpop {
  #nonce = randomBytes(16).toString('base64url')
  readonly #seen = new Map<string, number>()

  constructor(
    private readonly endpoint: string,
    private readonly requireNonce: boolean,
  ) {}

  /** The nonce a proof must carry when nonces are required. */
  get nonce(): string {
    return this.#nonce
  }

  /** Replaces the nonce (as a server does from time to time); proofs with the old one get `use_dpop_nonce`. */
  rotateNonce(): string {
    this.#nonce = randomBytes(16).toString('base64url')
    return this.#nonce
  }

  /** The `DPoP-Nonce` header every token-endpoint response carries when nonces are required. */
  headers(): Record<string, string> {
    return this.requireNonce ? { 'dpop-nonce': this.#nonce } : {}
  }

  /**
   * Checks the one `DPoP` header of a token request (RFC 9449 §4.3) and returns the RFC 7638
   * thumbprint of its key, or `undefined` when the request has no proof.
   *
   * @throws TokenError `invalid_dpop_proof`, or `use_dpop_nonce` when the current nonce is missing.
   */
  async check(values: readonly string[] | undefined): Promise<string | undefined> {
    if (values === undefined || values.length === 0) return undefined
    if (values.length > 1) throw proofError('more than one DPoP header')
    const proof = values[0] ?? ''
    let payload: Record<string, unknown>
    let jwk: JWK
    try {
      const verified = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGORITHMS })
      payload = verified.payload
      jwk = verified.protectedHeader.jwk as JWK
    } catch {
      throw proofError('DPoP proof signature, typ, alg or jwk is invalid')
    }
    const { jti, htm, htu, iat } = payload
    if (typeof jti !== 'string' || jti.length === 0) throw proofError('DPoP proof has no jti')
    if (htm !== 'POST') throw proofError('DPoP proof htm mismatch')
    if (typeof htu !== 'string' || !sameEndpoint(htu, this.endpoint)) throw proofError('DPoP proof htu mismatch')
    const now = Math.floor(Date.now() / 1000)
    if (typeof iat !== 'number' || Math.abs(now - iat) > IAT_WINDOW_SECONDS) throw proofError('DPoP proof iat is not recent')
    if (this.requireNonce && payload['nonce'] !== this.#nonce) {
      throw new TokenError(400, 'use_dpop_nonce', 'DPoP proof must carry the current nonce')
    }
    this.#forgetOld(now)
    if (this.#seen.has(jti)) throw proofError('DPoP proof jti was used before')
    this.#seen.set(jti, now)
    return calculateJwkThumbprint(jwk, 'sha256')
  }

  #forgetOld(now: number): void {
    for (const [jti, at] of this.#seen) {
      if (now - at <= 2 * IAT_WINDOW_SECONDS) break // insertion order: the rest are newer
      this.#seen.delete(jti)
    }
  }
}

/** `htu` names the endpoint: same URL once query and fragment are cut off (RFC 9449 §4.3 point 9). */
function sameEndpoint(htu: string, endpoint: string): boolean {
  const url = URL.canParse(htu) ? new URL(htu) : undefined
  if (!url) return false
  url.search = ''
  url.hash = ''
  return url.href === new URL(endpoint).href
}

function proofError(description: string): TokenError {
  return new TokenError(400, 'invalid_dpop_proof', description)
}

import { createHmac, timingSafeEqual } from 'node:crypto'

/** The server nonces of RFC 9449 §8 as the proof check and the challenge use them. */
export interface DpopNonceSource {
  /** The nonce to hand out now (`DPoP-Nonce`). */
  current(): string
  /** Whether a proof's `nonce` is one this server issued and still accepts. */
  isValid(nonce: unknown): boolean
}

/**
 * Stateless DPoP server nonces (RFC 9449 §8): `<slice>.<mac>` where `slice` is the current time
 * window and `mac` an HMAC-SHA-256 of it under a secret shared by the replicas. A nonce is valid
 * in its window and the next one, so replicas need no shared state, only the secret.
 */
export class DpopNonces implements DpopNonceSource {
  readonly #secret: Buffer
  readonly #windowMs: number
  readonly #now: () => number

  constructor(secret: Buffer, windowSeconds: number, now: () => number) {
    this.#secret = secret
    this.#windowMs = windowSeconds * 1000
    this.#now = now
  }

  #mac(slice: number): string {
    return createHmac('sha256', this.#secret).update(`callsign-dpop-nonce:${slice}`).digest('base64url').slice(0, 22)
  }

  /** The nonce to hand out now. */
  current(): string {
    const slice = Math.floor(this.#now() / this.#windowMs)
    return `${slice.toString(36)}.${this.#mac(slice)}`
  }

  /** True for a nonce of the current or the previous window. */
  isValid(nonce: unknown): boolean {
    if (typeof nonce !== 'string' || nonce.length > 64) return false
    const dot = nonce.indexOf('.')
    if (dot <= 0) return false
    const slice = Number.parseInt(nonce.slice(0, dot), 36)
    if (!Number.isSafeInteger(slice) || slice.toString(36) !== nonce.slice(0, dot)) return false
    const current = Math.floor(this.#now() / this.#windowMs)
    if (slice !== current && slice !== current - 1) return false
    const expected = Buffer.from(this.#mac(slice))
    const given = Buffer.from(nonce.slice(dot + 1))
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
}

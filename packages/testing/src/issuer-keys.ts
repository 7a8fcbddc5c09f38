import { calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'

/**
 * JWS algorithms a {@link TestIssuer} can hold signing keys for.
 *
 * `EdDSA` keys are Ed25519; RSA keys (`PS256`, `RS256`) are 2048-bit.
 *
 * @example
 * ```ts
 * const algorithms: TestIssuerAlgorithm[] = ['ES256', 'RS256'];
 * ```
 */
export type TestIssuerAlgorithm = 'ES256' | 'ES384' | 'PS256' | 'RS256' | 'EdDSA'

/**
 * Every algorithm accepted by {@link TestIssuerAlgorithm}.
 *
 * @example
 * ```ts
 * const issuer = await startTestIssuer({ algorithms: [...TEST_ISSUER_ALGORITHMS] });
 * ```
 */
export const TEST_ISSUER_ALGORITHMS: readonly TestIssuerAlgorithm[] = Object.freeze(['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'])

/**
 * One signing key of a test issuer.
 *
 * @example
 * ```ts
 * const key: IssuerKey = ring.select({ alg: 'ES256' });
 * ```
 * @internal
 */
export interface IssuerKey {
  kid: string
  alg: TestIssuerAlgorithm
  privateKey: CryptoKey
  publicKey: CryptoKey
  /** Public JWK as published: with `kid`, `alg` and `use: 'sig'`. */
  publicJwk: JWK
}

/**
 * The ordered set of signing keys of a test issuer, with a current default
 * signing key. Key IDs are RFC 7638 JWK thumbprints.
 *
 * @example
 * ```ts
 * const ring = await IssuerKeyRing.create(['ES256']);
 * const kid = await ring.rotate('ES256', true);
 * ```
 * @internal
 */
export class IssuerKeyRing {
  readonly #keys: IssuerKey[] = []
  #currentKid = ''

  private constructor() {}

  /**
   * Creates a key ring with one fresh key per algorithm; the first becomes current.
   *
   * @param algorithms - Non-empty list of algorithms, default order kept.
   * @returns The key ring.
   */
  static async create(algorithms: readonly TestIssuerAlgorithm[]): Promise<IssuerKeyRing> {
    if (algorithms.length === 0) throw new TypeError('startTestIssuer: `algorithms` must not be empty')
    const ring = new IssuerKeyRing()
    const keys = await Promise.all(algorithms.map((alg) => generateIssuerKey(alg)))
    ring.#keys.push(...keys)
    ring.#currentKid = keys[0]?.kid ?? ''
    return ring
  }

  /** Key ID of the current default signing key. */
  get currentKid(): string {
    return this.#currentKid
  }

  /**
   * Finds the key to sign with.
   *
   * @param selector - `kid` wins; otherwise the newest key of `alg`; otherwise the current key.
   * @returns The key.
   * @throws TypeError when no key matches, or `kid` and `alg` disagree.
   */
  select(selector: { kid?: string | undefined; alg?: string | undefined } = {}): IssuerKey {
    const { kid, alg } = selector
    if (kid !== undefined) {
      const key = this.#keys.find((k) => k.kid === kid)
      if (!key) throw new TypeError(`test issuer: no key with kid "${kid}"`)
      if (alg !== undefined && key.alg !== alg) {
        throw new TypeError(`test issuer: key "${kid}" is ${key.alg}, not ${alg}`)
      }
      return key
    }
    const current = this.#keys.find((k) => k.kid === this.#currentKid)
    if (alg === undefined || current?.alg === alg) {
      if (!current) throw new TypeError('test issuer: no current key')
      return current
    }
    const newest = this.#keys.findLast((k) => k.alg === alg)
    if (!newest) throw new TypeError(`test issuer: no ${alg} key`)
    return newest
  }

  /**
   * Adds a new key of `alg` and makes it the current default signing key.
   *
   * @param alg - Algorithm of the new key.
   * @param keepPrevious - When false, the previous current key and every other
   *   key of `alg` are removed from the ring (and so from the JWKS).
   * @returns The new key's `kid`.
   */
  async rotate(alg: TestIssuerAlgorithm, keepPrevious: boolean): Promise<string> {
    const key = await generateIssuerKey(alg)
    if (!keepPrevious) {
      const previous = this.#currentKid
      for (let i = this.#keys.length - 1; i >= 0; i--) {
        const k = this.#keys[i]
        if (k && (k.kid === previous || k.alg === alg)) this.#keys.splice(i, 1)
      }
    }
    this.#keys.push(key)
    this.#currentKid = key.kid
    return key.kid
  }

  /** Public keys, oldest first, as published in the JWKS. */
  publicJwks(): { keys: JWK[] } {
    return { keys: this.#keys.map((k) => ({ ...k.publicJwk })) }
  }

  /** Distinct algorithms currently held, in key order. */
  algorithms(): TestIssuerAlgorithm[] {
    return [...new Set(this.#keys.map((k) => k.alg))]
  }
}

async function generateIssuerKey(alg: TestIssuerAlgorithm): Promise<IssuerKey> {
  if (!TEST_ISSUER_ALGORITHMS.includes(alg)) {
    throw new TypeError(`test issuer: unsupported algorithm "${String(alg)}"`)
  }
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(jwk, 'sha256')
  return { kid, alg, privateKey, publicKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } }
}

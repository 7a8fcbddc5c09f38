import type { KeyObject } from 'node:crypto'
import { fail } from './internal/validate.js'

/** What Callsign knows of one JWS algorithm: how to verify it and which keys fit it. */
export interface AlgorithmSpec {
  /** node:crypto digest; `null` for EdDSA (the hash is part of the scheme). */
  hash: string | null
  /** JWK `kty` of its keys (RFC 7518 §6.1). */
  kty: 'EC' | 'OKP' | 'RSA'
  /** JWK `crv` its keys must have (ES256 is P-256 only, RFC 7518 §3.4); `undefined` for RSA. */
  crv: string | undefined
  /** Node's name of that curve (`KeyObject.asymmetricKeyDetails.namedCurve`), for EC. */
  namedCurve?: string
  /** RSASSA-PSS (RFC 7518 §3.5): salt as long as the hash. */
  pss?: true
}

/** The one table of asymmetric JWS algorithms (RFC 7518 §3, RFC 8037): the order is the documented one. */
const ALGORITHMS = {
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256', namedCurve: 'prime256v1' },
  ES384: { hash: 'sha384', kty: 'EC', crv: 'P-384', namedCurve: 'secp384r1' },
  ES512: { hash: 'sha512', kty: 'EC', crv: 'P-521', namedCurve: 'secp521r1' },
  EdDSA: { hash: null, kty: 'OKP', crv: 'Ed25519' },
  Ed25519: { hash: null, kty: 'OKP', crv: 'Ed25519' },
  RS256: { hash: 'sha256', kty: 'RSA', crv: undefined },
  RS384: { hash: 'sha384', kty: 'RSA', crv: undefined },
  RS512: { hash: 'sha512', kty: 'RSA', crv: undefined },
  PS256: { hash: 'sha256', kty: 'RSA', crv: undefined, pss: true },
  PS384: { hash: 'sha384', kty: 'RSA', crv: undefined, pss: true },
  PS512: { hash: 'sha512', kty: 'RSA', crv: undefined, pss: true },
} as const satisfies Record<string, AlgorithmSpec>

export type Algorithm = keyof typeof ALGORITHMS

/** Asymmetric JWS algorithms Callsign can verify (RFC 7518, RFC 8037). */
export const SUPPORTED_ALGORITHMS: readonly Algorithm[] = Object.freeze(Object.keys(ALGORITHMS) as Algorithm[])

/** Default allowlist: every supported asymmetric algorithm. `none` and `HS*` are never accepted. */
export const DEFAULT_ALGORITHMS: readonly Algorithm[] = SUPPORTED_ALGORITHMS

// A Map, not the object: a name from a token header (`constructor`, `__proto__`) finds nothing.
const SPECS: ReadonlyMap<string, AlgorithmSpec> = new Map(Object.entries(ALGORITHMS))

/** The spec of a supported algorithm; `undefined` for any other name. */
export const algorithmSpec = (alg: string): AlgorithmSpec | undefined => SPECS.get(alg)

/** An algorithm allowlist option: a non-empty array of supported names; `none` and `HS*` refused with their reason. */
export function algorithmsOf(value: unknown, option: string): Set<string> {
  if (!Array.isArray(value) || value.length === 0) return fail(option, 'must be a non-empty array of algorithm names')
  const result = new Set<string>()
  for (const alg of value) {
    if (typeof alg !== 'string') fail(option, 'must contain only strings')
    if (/^none$/i.test(alg) || /^HS/i.test(alg)) {
      fail(option, `contains ${JSON.stringify(alg)}: unsigned and symmetric (HS*) algorithms are refused; access tokens must be signed with an asymmetric key`)
    }
    if (!SPECS.has(alg)) fail(option, `contains unsupported algorithm ${JSON.stringify(alg)} (supported: ${SUPPORTED_ALGORITHMS.join(', ')})`)
    result.add(alg)
  }
  return result
}

/** The algorithm a private `key` signs with: RS256 for RSA, EdDSA for Ed25519, ES* by curve; `undefined` otherwise. */
export function signingAlgorithmOf(key: KeyObject): Algorithm | undefined {
  const type = key.asymmetricKeyType
  if (type === 'rsa') return 'RS256'
  if (type === 'ed25519') return 'EdDSA'
  if (type !== 'ec') return undefined
  const curve = key.asymmetricKeyDetails?.namedCurve
  return curve === undefined ? undefined : SUPPORTED_ALGORITHMS.find((alg) => algorithmSpec(alg)!.namedCurve === curve)
}

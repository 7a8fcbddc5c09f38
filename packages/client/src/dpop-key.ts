/**
 * The client's DPoP key (RFC 9449): generated at start (its private half not extractable) or
 * imported from the `dpop.privateKey` option. The same key binds the tokens (`cnf.jkt`) and
 * signs every proof, at the token endpoint and at the services.
 */
import { constants, createPublicKey, KeyObject, type SignKeyObjectInput } from 'node:crypto'
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose'
import type { webcrypto } from 'node:crypto'
import { algorithmSpec, type AlgorithmSpec } from '@callsign/core'
import type { DpopKey } from './contracts.js'
import { DPOP_ALGORITHMS, resolveDpop, type PrivateKeyInput } from './token-options.js'

/**
 * Create the DPoP key: `true` (or `{ alg }`) generates one (ES256 by default) whose private key
 * cannot be exported; `{ privateKey }` imports that key, its algorithm inferred unless `alg` says.
 * @throws TypeError naming `dpop` when the option is invalid.
 * @example const key = await createDpopKey(true) // key.thumbprint is the tokens' cnf.jkt
 */
export async function createDpopKey(option: true | { privateKey?: PrivateKeyInput; alg?: string }): Promise<DpopKey> {
  const resolved = resolveDpop(option, 'dpop')
  if (!resolved) throw new TypeError('Callsign: "dpop" must be true or { privateKey?, alg? }')
  const { alg } = resolved
  let privateKey: CryptoKey
  let publicKey: CryptoKey
  if (resolved.privateKey === undefined) {
    ;({ privateKey, publicKey } = await generateKeyPair(alg, { extractable: false }))
  } else {
    const pkcs8 = resolved.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    privateKey = (await importPKCS8(pkcs8, alg, { extractable: false })) as CryptoKey
    // oauth4webapi puts the public JWK in each proof's header: the public half must be extractable.
    const jwk = createPublicKey(resolved.privateKey).export({ format: 'jwk' }) as JWK
    publicKey = (await importJWK(jwk, alg, { extractable: true })) as CryptoKey
  }
  const exported = await exportJWK(publicKey)
  const publicJwk: Record<string, string> = {}
  for (const [name, value] of Object.entries(exported)) if (typeof value === 'string') publicJwk[name] = value
  const key: DpopKey = Object.freeze({
    keyPair: { privateKey, publicKey } as webcrypto.CryptoKeyPair,
    alg,
    publicJwk: Object.freeze(publicJwk),
    thumbprint: await calculateJwkThumbprint(exported, 'sha256'),
  })
  proofSignerOf(key) // made now: the first call does not pay for it
  return key
}

/** node:crypto's sign options for an algorithm of core's table: JWS's raw ECDSA signatures, RSASSA-PSS with a salt as long as the hash. */
function signOptionsOf(spec: AlgorithmSpec): Omit<SignKeyObjectInput, 'key'> {
  if (spec.kty === 'EC') return { dsaEncoding: 'ieee-p1363' }
  if (spec.pss) return { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
  return {}
}

/** What signing a proof needs of a key, prepared once: the protected header, encoded, and the node:crypto key and parameters. */
export interface ProofSigner {
  /** base64url of `{ alg, typ: 'dpop+jwt', jwk }` (RFC 9449 §4.2). */
  readonly header: string
  /** node:crypto's digest for `sign` (`null` for EdDSA). */
  readonly hash: string | null
  /** The private key as a `KeyObject` (non-extractable keys too), with the algorithm's sign options. */
  readonly key: SignKeyObjectInput
}

const signers = new WeakMap<DpopKey, ProofSigner>()

/**
 * The proof signer of `key`, made at its first use and kept as long as the key. One per key:
 * WebCrypto's per-call cost is paid neither for the header nor for the signature.
 * @throws TypeError for an algorithm that is not a DPoP algorithm of the client.
 */
export function proofSignerOf(key: DpopKey): ProofSigner {
  let signer = signers.get(key)
  if (signer === undefined) {
    const spec = DPOP_ALGORITHMS.includes(key.alg) ? algorithmSpec(key.alg) : undefined
    if (spec === undefined) throw new TypeError(`Callsign: the DPoP key's algorithm ${JSON.stringify(key.alg)} is not supported`)
    signer = Object.freeze({
      header: base64url.encode(JSON.stringify({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk })),
      hash: spec.hash,
      key: Object.freeze({ key: KeyObject.from(key.keyPair.privateKey), ...signOptionsOf(spec) }),
    })
    signers.set(key, signer)
  }
  return signer
}

/**
 * The client's DPoP key (RFC 9449): generated at start (its private half not extractable) or
 * imported from the `dpop.privateKey` option. The same key binds the tokens (`cnf.jkt`) and
 * signs every proof, at the token endpoint and at the services.
 */
import { createPublicKey } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, importPKCS8, type CryptoKey, type JWK } from 'jose'
import type { webcrypto } from 'node:crypto'
import type { DpopKey } from './contracts.js'
import { resolveDpop, type PrivateKeyInput } from './token-options.js'

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
  return Object.freeze({
    keyPair: { privateKey, publicKey } as webcrypto.CryptoKeyPair,
    alg,
    publicJwk: Object.freeze(publicJwk),
    thumbprint: await calculateJwkThumbprint(exported, 'sha256'),
  })
}

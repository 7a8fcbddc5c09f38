/**
 * DPoP proofs for service calls (RFC 9449 §4.2), signed with node:crypto: for every algorithm the
 * client accepts for `dpop`, with a generated key and with one given as PEM, a proof verifies with
 * jose against the key it embeds and carries the claims of the request.
 */
import { createHash, generateKeyPairSync } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose'
import { describe, expect, it } from 'vitest'
import { DPOP_ALGORITHMS } from '@callsign/client'
import { createDpopKey } from '../src/dpop-key.js'
import { createAthMemo, createProof } from '../src/proof.js'

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'
const NOW = Date.UTC(2030, 0, 1, 12, 0, 0, 500)

const pems = new Map<string, string>()

/** A PEM private key that signs with `alg` (one per key type: an RSA key signs every RS* and PS* algorithm). */
function pemFor(alg: string): string {
  const type = alg.startsWith('ES') ? alg : alg === 'EdDSA' || alg === 'Ed25519' ? 'ed25519' : 'rsa'
  let pem = pems.get(type)
  if (pem !== undefined) return pem
  const privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const
  const publicKeyEncoding = { type: 'spki', format: 'pem' } as const
  if (alg.startsWith('ES')) {
    const namedCurve = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }[alg]!
    pem = generateKeyPairSync('ec', { namedCurve, privateKeyEncoding, publicKeyEncoding }).privateKey
  } else if (type === 'ed25519') {
    pem = generateKeyPairSync('ed25519', { privateKeyEncoding, publicKeyEncoding }).privateKey
  } else {
    pem = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding, publicKeyEncoding }).privateKey
  }
  pems.set(type, pem)
  return pem
}

describe('createProof', () => {
  it('covers every DPoP algorithm of the client', () => {
    expect(DPOP_ALGORITHMS).toEqual(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'])
  })

  for (const alg of DPOP_ALGORITHMS) {
    for (const source of ['generated', 'PEM'] as const) {
      it(`${alg}, ${source} key: verifies against its embedded jwk, with typ, htm, htu, ath, nonce, iat and a unique jti`, async () => {
        const key = await createDpopKey(source === 'generated' ? { alg } : { privateKey: pemFor(alg), alg })
        const ath = createAthMemo()
        const url = new URL('https://orders.example.org:8443/orders/42?page=2#top')
        const proof = createProof(key, { method: 'PATCH', url, accessToken: TOKEN, nonce: 'n-1_abc' }, ath, () => NOW)
        const other = createProof(key, { method: 'GET', url, accessToken: TOKEN, nonce: undefined }, ath, () => NOW)

        const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [alg] })
        expect(protectedHeader).toEqual({ alg, typ: 'dpop+jwt', jwk: key.publicJwk })
        expect(protectedHeader.jwk).not.toHaveProperty('d')
        expect(await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256')).toBe(key.thumbprint)
        expect(payload).toEqual({
          htm: 'PATCH',
          htu: 'https://orders.example.org:8443/orders/42',
          iat: Math.floor(NOW / 1000),
          jti: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
          ath: createHash('sha256').update(TOKEN).digest('base64url'),
          nonce: 'n-1_abc',
        })

        const second = await jwtVerify(other, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [alg] })
        expect(second.payload).not.toHaveProperty('nonce')
        expect(second.payload.htm).toBe('GET')
        expect(second.payload.jti).not.toBe(payload.jti)
        expect(decodeProtectedHeader(other)).toEqual(protectedHeader)
      })
    }
  }

  it('a key made elsewhere (not by createDpopKey) signs too', async () => {
    const made = await createDpopKey({ alg: 'ES256' })
    const copy = { ...made }
    const proof = createProof(copy, { method: 'GET', url: new URL('https://orders.example.org/'), accessToken: TOKEN, nonce: undefined }, createAthMemo())
    const { protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] })
    expect(await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256')).toBe(made.thumbprint)
  })
})

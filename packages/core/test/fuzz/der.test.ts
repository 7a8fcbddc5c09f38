/**
 * Property-based tests of the DER reader behind the leaf rule (`internal/der.ts`): on any bytes,
 * and on real certificates with bytes flipped, cut or inserted, the readers return a result or
 * throw `RangeError`, never anything else, never read out of bounds; KeyUsage stays within its nine
 * named bits; `checkLeafCertificate` only ever refuses with `peer_unauthorized`. Seeded.
 */
import { X509Certificate } from 'node:crypto'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { createTestCa } from '@callsign/testing'
import { AuthError } from '../../src/errors.js'
import { certificateExtensions, readBasicConstraintsCa, readKeyUsage } from '../../src/internal/der.js'
import { checkLeafCertificate } from '../../src/peer-certificate.js'

const SEED = 4_242_017
const RUNS = 500

/** Runs every reader on `der`: each one returns a well-formed value or throws RangeError. */
function readAll(der: Uint8Array): void {
  let extensions: Map<string, Uint8Array>
  try {
    extensions = certificateExtensions(der)
  } catch (error) {
    expect(error).toBeInstanceOf(RangeError)
    return
  }
  for (const [oid, value] of extensions) {
    expect(oid).toMatch(/^[0-9a-f]*$/)
    expect(value.byteLength).toBeLessThanOrEqual(der.byteLength)
  }
  try {
    const usage = readKeyUsage(extensions)
    if (usage !== undefined) expect(usage >= 0 && usage < 1 << 16 && Number.isInteger(usage)).toBe(true)
  } catch (error) {
    expect(error).toBeInstanceOf(RangeError)
  }
  try {
    expect(typeof readBasicConstraintsCa(extensions)).toBe('boolean')
  } catch (error) {
    expect(error).toBeInstanceOf(RangeError)
  }
}

let leaf: Buffer
beforeAll(async () => {
  const ca = await createTestCa()
  leaf = new X509Certificate((await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/a', dnsNames: ['a.example'] })).certPem).raw
})

describe('fuzz: internal/der certificate extensions', () => {
  it('arbitrary bytes: a result or RangeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => readAll(bytes)),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('bytes shaped like nested TLVs (tags 0x30, 0xa3, 0x04, 0x03, 0x01 with long lengths): a result or RangeError', () => {
    const byte = fc.oneof(fc.constantFrom(0x30, 0xa3, 0xa0, 0x04, 0x03, 0x01, 0x06, 0x80, 0x81, 0x82, 0x84, 0xff, 0x00), fc.integer({ min: 0, max: 255 }))
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 200 }), (bytes) => readAll(Uint8Array.from(bytes))),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('a real certificate with bytes flipped, cut or inserted: a result or RangeError; the leaf rule only refuses with peer_unauthorized', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    )
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        let der = Buffer.from(leaf)
        for (const { kind, at, value } of mutations) {
          const i = at % (der.length + 1)
          if (kind === 'flip' && i < der.length) der[i] = value
          else if (kind === 'cut') der = der.subarray(0, i)
          else der = Buffer.concat([der.subarray(0, i), Buffer.from([value]), der.subarray(i)])
        }
        readAll(der)
        const cert = { raw: der, ca: false, keyUsage: ['1.3.6.1.5.5.7.3.2'] } as unknown as X509Certificate
        try {
          checkLeafCertificate(cert)
        } catch (error) {
          expect(error).toBeInstanceOf(AuthError)
          expect((error as AuthError).code).toBe('peer_unauthorized')
        }
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })
})

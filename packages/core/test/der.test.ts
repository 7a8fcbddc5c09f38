import { X509Certificate } from 'node:crypto'
import { createTestCa, type TestCa } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import { certificateExtensions, KEY_USAGE, readBasicConstraintsCa, readKeyUsage } from '../src/internal/der.js'

/** One DER TLV (short or long definite length). */
const tlv = (tag: number, ...parts: Uint8Array[]): Buffer => {
  const body = Buffer.concat(parts)
  const length = body.length < 0x80 ? [body.length] : [0x82, body.length >> 8, body.length & 0xff]
  return Buffer.concat([Buffer.from([tag, ...length]), body])
}
const KEY_USAGE_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x0f])
const BASIC_CONSTRAINTS_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x13])
const CRITICAL = Buffer.from([0x01, 0x01, 0xff])
/** A certificate-shaped DER: tbsCertificate { version, serial, then `fields` }, algorithm, signature. */
const certificate = (...fields: Uint8Array[]): Buffer =>
  tlv(0x30, tlv(0x30, tlv(0xa0, tlv(0x02, Buffer.from([2]))), tlv(0x02, Buffer.from([1])), ...fields), tlv(0x30), tlv(0x03, Buffer.from([0])))
const withExtensions = (...extensions: Uint8Array[]): Buffer => certificate(tlv(0xa3, tlv(0x30, ...extensions)))
const extension = (oid: Buffer, value: Buffer, critical = true): Buffer => tlv(0x30, oid, ...(critical ? [CRITICAL] : []), tlv(0x04, value))
const keyUsage = (unused: number, ...bytes: number[]): Buffer => extension(KEY_USAGE_OID, tlv(0x03, Buffer.from([unused, ...bytes])))

let ca: TestCa
beforeAll(async () => {
  ca = await createTestCa()
})
const raw = (pem: string): Buffer => new X509Certificate(pem).raw

describe('certificateExtensions, readKeyUsage, readBasicConstraintsCa', () => {
  it("reads the test kit's leaf: digitalSignature + keyAgreement, not a CA", async () => {
    const extensions = certificateExtensions(raw((await ca.issueCertificate({ spiffeId: 'spiffe://example.org/a' })).certPem))
    expect(readKeyUsage(extensions)).toBe(KEY_USAGE.digitalSignature | (1 << 4))
    expect(readBasicConstraintsCa(extensions)).toBe(false)
    // basicConstraints, keyUsage, extKeyUsage, subjectKeyIdentifier, authorityKeyIdentifier, subjectAltName
    expect([...extensions.keys()]).toEqual(['551d13', '551d0f', '551d25', '551d0e', '551d23', '551d11'])
  })

  it('reads a CA: cA:TRUE, keyCertSign + cRLSign', () => {
    const extensions = certificateExtensions(raw(ca.certPem))
    expect(readKeyUsage(extensions)).toBe(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign)
    expect(readBasicConstraintsCa(extensions)).toBe(true)
  })

  it('reads cA:TRUE that Node reports as ca: false (no keyCertSign)', async () => {
    const cert = new X509Certificate((await ca.issueCertificate({ isCa: true })).certPem)
    expect(cert.ca).toBe(false)
    expect(readBasicConstraintsCa(certificateExtensions(cert.raw))).toBe(true)
  })

  it('reports no key usage for a certificate without the extension, and none of anything without extensions', async () => {
    expect(readKeyUsage(certificateExtensions(raw((await ca.issueCertificate({ keyUsages: [] })).certPem)))).toBeUndefined()
    const bare = certificateExtensions(certificate(tlv(0x30), tlv(0x30)))
    expect(bare.size).toBe(0)
    expect(readKeyUsage(bare)).toBeUndefined()
    expect(readBasicConstraintsCa(bare)).toBe(false)
  })

  it.each<[string, Buffer, number]>([
    ['bit 0 (digitalSignature), 7 unused bits', keyUsage(7, 0x80), KEY_USAGE.digitalSignature],
    ['bits 5 and 6 (keyCertSign, cRLSign)', keyUsage(1, 0x06), KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign],
    ['bit 8 (decipherOnly) in a second octet', keyUsage(7, 0x00, 0x80), 1 << 8],
    ['no bits at all', keyUsage(0), 0],
  ])('decodes the BIT STRING: %s', (_case, ext, expected) => {
    expect(readKeyUsage(certificateExtensions(withExtensions(ext)))).toBe(expected)
  })

  it('reads BasicConstraints with cA absent (DEFAULT FALSE), false, and true with a path length', () => {
    const basic = (...fields: Buffer[]): boolean =>
      readBasicConstraintsCa(certificateExtensions(withExtensions(extension(BASIC_CONSTRAINTS_OID, tlv(0x30, ...fields)))))
    expect(basic()).toBe(false)
    expect(basic(tlv(0x01, Buffer.from([0x00])))).toBe(false)
    expect(basic(tlv(0x01, Buffer.from([0xff])), tlv(0x02, Buffer.from([0])))).toBe(true)
    expect(basic(tlv(0x02, Buffer.from([3])))).toBe(false)
  })

  it.each<[string, () => unknown]>([
    ['an empty input', () => certificateExtensions(Buffer.alloc(0))],
    ['a truncated certificate', () => certificateExtensions(raw(ca.certPem).subarray(0, 100))],
    ['a length beyond the input', () => certificateExtensions(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff]))],
    ['an indefinite length (BER, not DER)', () => certificateExtensions(Buffer.from([0x30, 0x80, 0x00, 0x00]))],
    ['something that is not a SEQUENCE', () => certificateExtensions(tlv(0x04, Buffer.from([1, 2])))],
    ['a duplicated extension (RFC 5280 §4.2)', () => certificateExtensions(withExtensions(keyUsage(7, 0x80), keyUsage(1, 0x06)))],
    ['an extension without extnValue', () => certificateExtensions(withExtensions(tlv(0x30, KEY_USAGE_OID)))],
    [
      'an extension whose critical flag is not a BOOLEAN',
      () => certificateExtensions(withExtensions(tlv(0x30, KEY_USAGE_OID, tlv(0x02, Buffer.from([1])), tlv(0x04, tlv(0x03, Buffer.from([7, 0x80])))))),
    ],
    [
      'a KeyUsage that is not a BIT STRING',
      () => readKeyUsage(certificateExtensions(withExtensions(extension(KEY_USAGE_OID, tlv(0x04, Buffer.from([0x80])))))),
    ],
    ['a KeyUsage with more than 7 unused bits', () => readKeyUsage(certificateExtensions(withExtensions(keyUsage(8, 0x80))))],
    ['an empty KeyUsage BIT STRING', () => readKeyUsage(certificateExtensions(withExtensions(extension(KEY_USAGE_OID, tlv(0x03)))))],
    [
      'a BasicConstraints BOOLEAN of two octets',
      () => readBasicConstraintsCa(certificateExtensions(withExtensions(extension(BASIC_CONSTRAINTS_OID, tlv(0x30, tlv(0x01, Buffer.from([0xff, 0xff]))))))),
    ],
  ])('throws RangeError for %s', (_case, read) => {
    expect(read).toThrow(RangeError)
  })
})

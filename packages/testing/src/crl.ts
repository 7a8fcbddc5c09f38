import { sign, type KeyObject } from 'node:crypto'
import { toPem } from './pem.js'

/**
 * What goes into one X.509 v2 CRL (RFC 5280 §5) signed with ECDSA P-256 and SHA-256.
 *
 * @internal
 */
export interface CrlContents {
  /** DER of the issuer's subject Name. */
  issuerName: Uint8Array
  /** DER of the issuer's authorityKeyIdentifier extension. */
  authorityKeyIdDer: Uint8Array
  /** The issuer's private key. */
  signingKey: KeyObject
  /** `thisUpdate`, also each entry's revocation date. */
  thisUpdate: Date
  nextUpdate: Date
  /** Revoked serial numbers as {@link normalizeSerialNumber} gives them. */
  serials: readonly string[]
  /** The `cRLNumber`. */
  crlNumber: number
}

/** DER of the OBJECT IDENTIFIER 2.5.29.20 (id-ce-cRLNumber). */
const CRL_NUMBER_OID = Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x14)
/** DER of the AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2, no parameters). */
const ECDSA_WITH_SHA256 = Uint8Array.of(0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02)

/**
 * Encodes and signs a CRL.
 *
 * @param contents - See {@link CrlContents}.
 * @returns The CRL, PEM encoded (`-----BEGIN X509 CRL-----`).
 * @internal
 */
export function signCrl(contents: CrlContents): string {
  const { issuerName, authorityKeyIdDer, signingKey, thisUpdate, nextUpdate, serials, crlNumber } = contents
  // Encoded by hand: @peculiar/x509's generator writes an empty crlEntryExtensions SEQUENCE
  // per entry (not DER: Extensions is SIZE (1..MAX)) and labels the PEM `CRL` instead of `X509 CRL`.
  const tbsCertList = der(
    0x30,
    der(0x02, Uint8Array.of(0x01)), // version v2
    ECDSA_WITH_SHA256,
    issuerName,
    derTime(thisUpdate),
    derTime(nextUpdate),
    ...(serials.length > 0 ? [der(0x30, ...serials.map((serial) => der(0x30, der(0x02, Buffer.from(serial, 'hex')), derTime(thisUpdate))))] : []),
    der(0xa0, der(0x30, authorityKeyIdDer, der(0x30, CRL_NUMBER_OID, der(0x04, derPositiveInteger(crlNumber))))),
  )
  const signature = sign('sha256', tbsCertList, { key: signingKey, dsaEncoding: 'der' })
  const crl = der(0x30, tbsCertList, ECDSA_WITH_SHA256, der(0x03, Uint8Array.of(0x00), signature))
  return toPem(crl, 'X509 CRL')
}

/**
 * The content octets of the DER INTEGER for a serial number given in hexadecimal: even length,
 * no redundant leading zero octet, a `00` octet added when the top bit is set (serial numbers
 * are positive, RFC 5280 §4.1.2.2).
 *
 * @internal
 */
export function normalizeSerialNumber(serial: string): string {
  const hex = serial.replace(/:/g, '').toLowerCase()
  if (!/^[0-9a-f]+$/.test(hex)) throw new TypeError(`issueCrl: serial number ${JSON.stringify(serial)} is not hexadecimal`)
  let even = hex.length % 2 === 0 ? hex : `0${hex}`
  even = even.replace(/^(00)+/, '')
  if (even === '') return '00'
  return parseInt(even.slice(0, 2), 16) >= 0x80 ? `00${even}` : even
}

/** One DER TLV: `tag`, definite length, the concatenated `parts`. */
function der(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts)
  let length: number[]
  if (body.length < 0x80) {
    length = [body.length]
  } else {
    const bytes: number[] = []
    for (let n = body.length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256)
    length = [0x80 | bytes.length, ...bytes]
  }
  return Buffer.concat([Uint8Array.of(tag, ...length), body])
}

/** RFC 5280 §5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050, always UTC with seconds. */
function derTime(date: Date): Uint8Array {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'
  const year = date.getUTCFullYear()
  return year >= 1950 && year < 2050 ? der(0x17, Buffer.from(digits.slice(2), 'ascii')) : der(0x18, Buffer.from(digits, 'ascii'))
}

/** DER INTEGER for a small non-negative number (the cRLNumber value). */
function derPositiveInteger(value: number): Uint8Array {
  let hex = value.toString(16)
  if (hex.length % 2 === 1) hex = `0${hex}`
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`
  return der(0x02, Buffer.from(hex, 'hex'))
}

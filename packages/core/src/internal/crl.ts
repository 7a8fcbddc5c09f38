import type { X509Certificate } from 'node:crypto'
import { childrenOf, readTlv, type Tlv } from './der.js'

// Just enough of a CRL and a certificate to find a CRL's issuer and dates and a certificate's
// subject: a CA's CRL is the one whose issuer is the CA's subject (RFC 5280 §5.1.2.3).

/** RFC 5280 §4.1.2.5: UTCTime (YYMMDDHHMMSSZ, 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
function readTime(der: Uint8Array, tlv: Tlv): Date {
  const value = Buffer.from(der.subarray(tlv.start, tlv.end)).toString('latin1')
  const match =
    tlv.tag === 0x17
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(value)
      : tlv.tag === 0x18
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(value)
        : null
  if (!match) throw new RangeError('bad time')
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number]
  const fullYear = tlv.tag === 0x17 ? (year < 50 ? 2000 + year : 1900 + year) : year
  return new Date(Date.UTC(fullYear, month - 1, day, hour, minute, second))
}

export interface ParsedCrl {
  /** DER of the issuer Name. */
  issuer: Buffer
  thisUpdate: Date
  nextUpdate: Date | undefined
}

/** RFC 5280 §5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }. */
export function parseCrl(der: Buffer): ParsedCrl {
  const outer = readTlv(der, 0, der.length)
  if (outer.tag !== 0x30 || outer.end !== der.length) throw new RangeError('not a CRL')
  const [tbs, algorithm, signature, extra] = childrenOf(der, outer)
  if (!tbs || tbs.tag !== 0x30 || algorithm?.tag !== 0x30 || signature?.tag !== 0x03 || extra) throw new RangeError('not a CRL')
  const fields = childrenOf(der, tbs)
  const first = fields[0]?.tag === 0x02 ? 1 : 0 // optional version
  const issuer = fields[first + 1]
  const thisUpdate = fields[first + 2]
  const nextUpdate = fields[first + 3]
  if (fields[first]?.tag !== 0x30 || issuer?.tag !== 0x30 || !thisUpdate) throw new RangeError('not a CRL')
  return {
    issuer: der.subarray(issuer.offset, issuer.end),
    thisUpdate: readTime(der, thisUpdate),
    nextUpdate: nextUpdate && (nextUpdate.tag === 0x17 || nextUpdate.tag === 0x18) ? readTime(der, nextUpdate) : undefined,
  }
}

/** DER of a certificate's subject Name (RFC 5280 §4.1), or `undefined` if it cannot be found. */
export function subjectOf(cert: X509Certificate): Buffer | undefined {
  try {
    const der = cert.raw
    const tbs = childrenOf(der, readTlv(der, 0, der.length))[0]
    if (!tbs) return undefined
    const fields = childrenOf(der, tbs)
    const first = fields[0]?.tag === 0xa0 ? 1 : 0 // [0] EXPLICIT version
    const subject = fields[first + 4] // serialNumber, signature, issuer, validity, subject
    return subject?.tag === 0x30 ? der.subarray(subject.offset, subject.end) : undefined
  } catch {
    return undefined
  }
}

/**
 * Minimal, bounds-checked DER reading (X.690): just enough to find a CRL's issuer and dates, a
 * certificate's subject, and the certificate extensions Node's `X509Certificate` does not expose
 * (KeyUsage bits, BasicConstraints `cA`). Every read stays inside its parent's bounds; anything
 * malformed throws `RangeError`.
 */

export interface Tlv {
  tag: number
  /** Offset of the tag. */
  offset: number
  /** Offset of the value. */
  start: number
  end: number
}

export function readTlv(der: Uint8Array, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new RangeError('truncated DER')
  const tag = der[offset]!
  let length = der[offset + 1]!
  let start = offset + 2
  if (length & 0x80) {
    const count = length & 0x7f
    if (count === 0 || count > 4 || start + count > limit) throw new RangeError('bad DER length')
    length = 0
    for (let i = 0; i < count; i++) length = length * 256 + der[start + i]!
    start += count
  }
  const end = start + length
  if (end > limit) throw new RangeError('truncated DER')
  return { tag, offset, start, end }
}

export function childrenOf(der: Uint8Array, parent: Tlv): Tlv[] {
  const children: Tlv[] = []
  for (let offset = parent.start; offset < parent.end;) {
    const child = readTlv(der, offset, parent.end)
    children.push(child)
    offset = child.end
  }
  return children
}

/** DER content octets of the OBJECT IDENTIFIERs read here. */
const OID = {
  keyUsage: '551d0f', // 2.5.29.15
  basicConstraints: '551d13', // 2.5.29.19
} as const

/** KeyUsage bits (RFC 5280 §4.2.1.3) as {@link readKeyUsage} returns them: named bit n is `1 << n`. */
export const KEY_USAGE = {
  digitalSignature: 1 << 0,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
} as const

/**
 * The extensions of a DER certificate (RFC 5280 §4.1: Certificate -> tbsCertificate -> [3]
 * EXPLICIT Extensions -> Extension { extnID, critical?, extnValue }), as the content of each
 * `extnValue` by the hex of its OID's content octets. Empty when the certificate has none.
 * Throws `RangeError` when the structure is malformed or an extension appears twice (§4.2).
 */
export function certificateExtensions(der: Uint8Array): Map<string, Uint8Array> {
  const certificate = readTlv(der, 0, der.length)
  if (certificate.tag !== 0x30) throw new RangeError('not a certificate')
  const tbs = childrenOf(der, certificate)[0]
  if (tbs?.tag !== 0x30) throw new RangeError('not a certificate')
  const extensions = new Map<string, Uint8Array>()
  const wrapper = childrenOf(der, tbs).find((field) => field.tag === 0xa3)
  if (!wrapper) return extensions
  const list = childrenOf(der, wrapper)
  if (list.length !== 1 || list[0]!.tag !== 0x30) throw new RangeError('bad extensions')
  for (const extension of childrenOf(der, list[0]!)) {
    if (extension.tag !== 0x30) throw new RangeError('bad extension')
    const parts = childrenOf(der, extension)
    const id = parts[0]
    const value = parts[parts.length - 1]
    const critical = parts.length === 3 ? parts[1] : undefined
    if (id?.tag !== 0x06 || value?.tag !== 0x04 || parts.length < 2 || parts.length > 3 || (critical && critical.tag !== 0x01)) {
      throw new RangeError('bad extension')
    }
    const key = hex(der, id)
    if (extensions.has(key)) throw new RangeError('duplicate extension')
    extensions.set(key, der.subarray(value.start, value.end))
  }
  return extensions
}

/**
 * The KeyUsage bits of a certificate's extensions (see {@link KEY_USAGE}), or `undefined` when it
 * has no KeyUsage extension. KeyUsage ::= BIT STRING: the first content octet counts the unused
 * bits, named bit 0 is the high bit of the next octet. Throws `RangeError` when malformed.
 */
export function readKeyUsage(extensions: ReadonlyMap<string, Uint8Array>): number | undefined {
  const value = extensions.get(OID.keyUsage)
  if (value === undefined) return undefined
  const bits = readTlv(value, 0, value.length)
  if (bits.tag !== 0x03 || bits.end !== value.length || bits.end - bits.start < 1 || value[bits.start]! > 7) throw new RangeError('bad KeyUsage')
  let usage = 0
  // Nine named bits at most (decipherOnly is bit 8): two octets after the unused-bits count.
  for (let octet = 0; octet < 2 && bits.start + 1 + octet < bits.end; octet++) {
    const byte = value[bits.start + 1 + octet]!
    for (let bit = 0; bit < 8; bit++) if (byte & (0x80 >> bit)) usage |= 1 << (octet * 8 + bit)
  }
  return usage
}

/**
 * The `cA` flag of a certificate's BasicConstraints extension (RFC 5280 §4.2.1.9); `false` when
 * the extension is absent. Read from the DER because Node's `X509Certificate.ca` is OpenSSL's
 * `X509_check_ca`, which says "not a CA" for `cA:TRUE` without the keyCertSign key usage.
 * BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }.
 * Throws `RangeError` when malformed.
 */
export function readBasicConstraintsCa(extensions: ReadonlyMap<string, Uint8Array>): boolean {
  const value = extensions.get(OID.basicConstraints)
  if (value === undefined) return false
  const sequence = readTlv(value, 0, value.length)
  if (sequence.tag !== 0x30 || sequence.end !== value.length) throw new RangeError('bad BasicConstraints')
  const first = childrenOf(value, sequence)[0]
  if (first?.tag !== 0x01) return false
  if (first.end - first.start !== 1) throw new RangeError('bad BasicConstraints')
  return value[first.start] !== 0
}

const hex = (der: Uint8Array, tlv: Tlv): string => Buffer.from(der.buffer, der.byteOffset + tlv.start, tlv.end - tlv.start).toString('hex')

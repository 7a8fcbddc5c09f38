import { createHash, X509Certificate } from 'node:crypto'
import { BlockList, isIPv4, isIPv6 } from 'node:net'
import { LRUCache } from 'lru-cache'
import { AuthError, invalidRequest } from './errors.js'
import { buildCertificatePath } from './internal/certificate-path.js'
import { pemCertificateBlocks } from './internal/pem.js'
import { checkLeafCertificate, describeCertificate, sealPeer, type PeerCertificate } from './peer-certificate.js'
import { parseSpiffeId, type CallerPattern } from './spiffe.js'

/**
 * One element of Envoy's `x-forwarded-client-cert` header: the values of its keys, in order.
 * Keys are case-insensitive (`By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`).
 */
export type XfccElement = Map<string, string[]>

/** Bounds of the XFCC parser. */
export const XFCC_LIMITS = { maxElements: 16, maxPairs: 64 } as const

const KEY = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/

/**
 * Parse Envoy's XFCC header strictly: elements separated by `,`, key=value pairs by `;`, values
 * optionally double-quoted (with `\"` escapes) when they contain `,`, `;` or `=`. Returns the
 * elements in order; throws `AuthError('invalid_request')` for anything malformed.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert
 */
export function parseXfcc(header: string): XfccElement[] {
  const cursor = new XfccCursor(header)
  const elements: XfccElement[] = []
  let element: XfccElement = new Map()
  let pairs = 0
  for (;;) {
    const name = cursor.key()
    const value = cursor.value()
    const list = element.get(name)
    if (list) list.push(value)
    else element.set(name, [value])
    if (++pairs > XFCC_LIMITS.maxPairs) malformedXfcc()
    const separator = cursor.separator()
    if (separator === undefined) break
    if (separator === ',') {
      elements.push(element)
      if (elements.length >= XFCC_LIMITS.maxElements) malformedXfcc()
      element = new Map()
      pairs = 0
    }
  }
  elements.push(element)
  return elements
}

const malformedXfcc = (): never => {
  throw invalidRequest('malformed forwarded client certificate header', 'client certificate')
}

/** {@link parseXfcc}'s position in the header, read one token at a time; anything malformed throws. */
class XfccCursor {
  #i = 0
  constructor(readonly header: string) {}

  /** A `key=`: the key, lower-cased (keys are case-insensitive). */
  key(): string {
    const eq = this.header.indexOf('=', this.#i)
    if (eq === -1) malformedXfcc()
    const key = this.header.slice(this.#i, eq).trim()
    if (!KEY.test(key)) malformedXfcc()
    this.#i = eq + 1
    return key.toLowerCase()
  }

  /** A value: double-quoted (with `\"` escapes), or bare up to the next `;` or `,` (trimmed). */
  value(): string {
    return this.header[this.#i] === '"' ? this.#quoted() : this.#bare()
  }

  /** What follows a value: `';'` (another pair), `','` (another element, spaces skipped) or `undefined` at the end. */
  separator(): ';' | ',' | undefined {
    const header = this.header
    while (header[this.#i] === ' ') this.#i++
    if (this.#i >= header.length) return undefined
    const separator = header[this.#i]
    if (separator !== ';' && separator !== ',') return malformedXfcc()
    this.#i++
    if (separator === ',') while (header[this.#i] === ' ') this.#i++
    return separator
  }

  #quoted(): string {
    const header = this.header
    let value = ''
    let i = this.#i + 1
    for (;;) {
      if (i >= header.length) malformedXfcc()
      const c = header[i]!
      if (c === '"') break
      if (c === '\\') {
        if (i + 1 >= header.length) malformedXfcc()
        value += header[i + 1]
        i += 2
      } else {
        value += c
        i++
      }
    }
    this.#i = i + 1
    return value
  }

  #bare(): string {
    const header = this.header
    let j = this.#i
    while (j < header.length && header[j] !== ';' && header[j] !== ',') {
      if (header[j] === '"' || header[j] === '=') malformedXfcc()
      j++
    }
    const value = header.slice(this.#i, j).trim()
    this.#i = j
    return value
  }
}

// Where explain.ts and the tests have always found it; the one PEM scanner is in internal/pem.ts.
export { pemCertificateBlocks }

/** Decode a URL-encoded PEM (Envoy `Cert`/`Chain`, nginx `$ssl_client_escaped_cert`) into certificates. */
export function decodeForwardedPem(value: string): X509Certificate[] {
  let pem: string
  try {
    pem = decodeURIComponent(value)
  } catch {
    throw invalidRequest('malformed forwarded client certificate', 'client certificate')
  }
  const blocks = pemCertificateBlocks(pem)
  if (blocks.length === 0 || blocks.length > 8) throw invalidRequest('malformed forwarded client certificate', 'client certificate')
  try {
    return blocks.map((block) => new X509Certificate(block))
  } catch {
    throw invalidRequest('malformed forwarded client certificate', 'client certificate')
  }
}

/**
 * Verify a forwarded leaf certificate as a TLS stack would, and as an identity: the leaf rules of
 * {@link checkLeafCertificate} (not a CA, no certificate or CRL signing, digitalSignature and
 * clientAuth when those extensions are present), then a path to one of `anchors` through the given
 * intermediates ({@link buildCertificatePath}: signatures, CA intermediates, validity at `now`).
 * Throws `AuthError('peer_unauthorized')`. Revocation is not checked for forwarded certificates.
 * Returns the verified path: the leaf, the intermediates used, the anchor.
 */
export function verifyForwardedChain(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  anchors: readonly X509Certificate[],
  now: number,
): X509Certificate[] {
  checkLeafCertificate(leaf)
  return buildCertificatePath(leaf, intermediates, anchors, now)
}

/** How the proxy forwards the client certificate. */
export type ForwardedFormat = 'xfcc' | 'nginx'

export interface ResolvedForwarded {
  header: string
  format: ForwardedFormat
  proxySpiffeIds: readonly CallerPattern[] | undefined
  proxyAddresses: BlockList | undefined
  anchors: readonly X509Certificate[]
  trustProxyAssertions: boolean
  maxHeaderBytes: number
  /** `'last'`: take the element the trusted proxy appended. `'single'`: exactly one element (SANITIZE_SET), more is a 400. */
  elements: 'last' | 'single'
}

/** Where the identity of `auth.peer` comes from. */
export type PeerVerification =
  /** The TLS socket authorized the certificate. */
  | 'tls'
  /** A trusted proxy forwarded the certificate, and Callsign verified its chain itself. */
  | 'forwarded-certificate'
  /** A trusted proxy only asserted `URI`/`DNS`/`Hash` (`trustProxyAssertions`): nothing was verified. */
  | 'proxy-assertion'

/** True when the remote address is in the trusted proxies' CIDRs. IPv4-mapped IPv6 counts as IPv4. */
export function addressTrusted(list: BlockList | undefined, address: string | undefined): boolean {
  if (!list || !address) return false
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  const ip = mapped ? mapped[1]! : address
  if (isIPv4(ip)) return list.check(ip, 'ipv4')
  if (isIPv6(ip)) return list.check(ip, 'ipv6')
  return false
}

/** Parse `10.0.0.0/8`, `127.0.0.1`, `::1/128` into a BlockList; throws TypeError naming the option. */
export function compileCidrs(cidrs: readonly string[], option: string): BlockList {
  const list = new BlockList()
  cidrs.forEach((cidr, index) => {
    const [ip, bits, ...rest] = cidr.split('/')
    const type = ip && isIPv4(ip) ? 'ipv4' : ip && isIPv6(ip) ? 'ipv6' : undefined
    const prefix = bits === undefined ? (type === 'ipv4' ? 32 : 128) : Number(bits)
    if (
      !type ||
      rest.length > 0 ||
      !Number.isInteger(prefix) ||
      prefix < 0 ||
      prefix > (type === 'ipv4' ? 32 : 128) ||
      (bits !== undefined && !/^\d+$/.test(bits))
    ) {
      throw new TypeError(`Callsign: "${option}[${index}]" is not an IP address or CIDR range: ${JSON.stringify(cidr)}`)
    }
    list.addSubnet(ip!, prefix, type)
  })
  return list
}

/** Parse PEM trust anchors; throws TypeError naming the option. */
export function parseAnchors(pem: string | readonly string[], option: string): X509Certificate[] {
  const text = typeof pem === 'string' ? pem : pem.join('\n')
  const blocks = pemCertificateBlocks(text)
  if (blocks.length === 0) throw new TypeError(`Callsign: "${option}" must contain at least one PEM certificate`)
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block)
    } catch {
      throw new TypeError(`Callsign: "${option}" certificate #${index + 1} cannot be parsed`)
    }
  })
}

/**
 * The trust-domain bundles (`mtls.trustDomains` given as a map), as forwarded certificates use
 * them: their union is the default anchors, and a SPIFFE ID must chain to its own domain's bundle.
 */
export interface ForwardedTrustBundles {
  /** Changes whenever a bundle does: elements verified before are verified again. */
  readonly generation: number
  anchors(): readonly X509Certificate[]
  /**
   * Throws `AuthError('peer_unauthorized')` unless `leaf` chains to the bundle of its SPIFFE ID's
   * domain; returns that path, or `undefined` when the domain has no bundle.
   */
  checkChain(spiffeId: string, leaf: X509Certificate, intermediates: readonly X509Certificate[], now: number): X509Certificate[] | undefined
}

interface CachedPeer {
  peer: PeerCertificate
  verification: PeerVerification
  /** Validity of every certificate of the verified path, rechecked at each use. */
  notBefore: number
  notAfter: number
  /** The bundles' generation it was verified with. */
  generation: number
}

/**
 * Reads the client identity a trusted proxy forwarded. Results are cached by header element
 * (bounded LRU), and the validity window is rechecked at every use.
 */
export class ForwardedPeers {
  readonly #config: ResolvedForwarded
  readonly #bundles: ForwardedTrustBundles | undefined
  readonly #cache = new LRUCache<string, CachedPeer>({ max: 1000 })

  /** `bundles`: when given, the anchors if `config.anchors` is empty, and each SPIFFE ID is checked against its domain's bundle. */
  constructor(config: ResolvedForwarded, bundles?: ForwardedTrustBundles) {
    this.#config = config
    this.#bundles = bundles
  }

  /**
   * The forwarded peer of a request whose immediate peer is a trusted proxy: `undefined` when the
   * header is absent or empty (the proxy saw no client certificate).
   */
  read(values: readonly string[], now: number): PeerCertificate | undefined {
    const { maxHeaderBytes, format } = this.#config
    if (values.length === 0) return undefined
    const raw = values.join(',')
    if (raw.length > maxHeaderBytes) throw invalidRequest('forwarded client certificate header too large', 'client certificate')
    if (raw.trim().length === 0) return undefined
    let element: string
    if (format === 'xfcc') {
      const elements = parseXfcc(raw)
      if (elements.length > 1 && this.#config.elements === 'single') {
        throw invalidRequest('more than one forwarded client certificate element', 'client certificate')
      }
      // The trusted proxy appends its element last; earlier ones were written by someone else.
      element = serializeElement(elements[elements.length - 1]!)
    } else {
      // One certificate, in one header line: two lines are ambiguous.
      if (values.length > 1) throw invalidRequest('more than one forwarded client certificate header', 'client certificate')
      element = raw.trim()
      if (element === '-' || element === '(null)') return undefined
    }
    const cached = this.#cache.get(element)
    if (cached && cached.generation === (this.#bundles?.generation ?? 0)) {
      if (now < cached.notBefore) throw new AuthError('peer_unauthorized', 'client certificate is not yet valid', { check: 'client certificate' })
      if (now > cached.notAfter) throw new AuthError('peer_unauthorized', 'client certificate has expired', { check: 'client certificate' })
      return cached.peer
    }
    const result = format === 'xfcc' ? this.#fromXfcc(parseXfcc(element)[0]!, now) : this.#fromCertificate(decodeForwardedPem(element), now)
    this.#cache.set(element, result)
    return result.peer
  }

  #fromXfcc(element: XfccElement, now: number): CachedPeer {
    const one = (key: string): string | undefined => {
      const list = element.get(key)
      if (list && list.length > 1) throw invalidRequest('malformed forwarded client certificate header', 'client certificate')
      return list?.[0]
    }
    const cert = one('cert')
    const hash = one('hash')
    if (cert !== undefined) {
      const [leaf, ...rest] = decodeForwardedPem(cert)
      if (rest.length > 0) throw invalidRequest('malformed forwarded client certificate', 'client certificate')
      const chain = one('chain')
      const intermediates = chain === undefined ? [] : decodeForwardedPem(chain).filter((c) => c.fingerprint256 !== leaf!.fingerprint256)
      if (hash !== undefined && hash.toLowerCase() !== createHash('sha256').update(leaf!.raw).digest('hex')) {
        throw invalidRequest('forwarded client certificate does not match its hash', 'client certificate')
      }
      return this.#verify(leaf!, intermediates, now)
    }
    if (!this.#config.trustProxyAssertions) {
      throw new AuthError('peer_unauthorized', 'the proxy forwarded no client certificate to verify', { check: 'client certificate' })
    }
    // Assertion only: URI / DNS / Hash as the proxy states them.
    if (hash === undefined || !/^[0-9a-fA-F]{64}$/.test(hash)) throw invalidRequest('malformed forwarded client certificate header', 'client certificate')
    const uris = element.get('uri') ?? []
    const dnsNames = element.get('dns') ?? []
    const spiffe = uris.filter((uri) => uri.toLowerCase().startsWith('spiffe:'))
    const peer: PeerCertificate = {
      uris,
      dnsNames,
      subject: one('subject') ?? '',
      x5tS256: Buffer.from(hash, 'hex').toString('base64url'),
      verification: 'proxy-assertion',
    }
    if (spiffe.length > 0) peer.spiffeId = describeUris(uris)
    return { peer: sealPeer(peer), verification: 'proxy-assertion', notBefore: -Infinity, notAfter: Infinity, generation: this.#bundles?.generation ?? 0 }
  }

  #fromCertificate(certs: X509Certificate[], now: number): CachedPeer {
    const [leaf, ...intermediates] = certs
    return this.#verify(leaf!, intermediates, now)
  }

  #verify(leaf: X509Certificate, intermediates: X509Certificate[], now: number): CachedPeer {
    const bundles = this.#bundles
    const generation = bundles?.generation ?? 0
    // The leaf's fitness as an identity (and its SANs) first, then its path.
    const peer = sealPeer({ ...describeCertificate(leaf), verification: 'forwarded-certificate' })
    const anchors = this.#config.anchors.length > 0 || !bundles ? this.#config.anchors : bundles.anchors()
    // The window of the paths actually verified (anchors included, unused chain certificates not).
    const path = buildCertificatePath(leaf, intermediates, anchors, now)
    if (bundles && peer.spiffeId !== undefined) path.push(...(bundles.checkChain(peer.spiffeId, leaf, intermediates, now) ?? []))
    return {
      peer,
      verification: 'forwarded-certificate',
      notBefore: Math.max(...path.map((c) => Date.parse(c.validFrom))),
      notAfter: Math.min(...path.map((c) => Date.parse(c.validTo))),
      generation,
    }
  }
}

/** The SPIFFE ID among asserted URIs, with the X509-SVID rules (exactly one URI, valid ID). */
function describeUris(uris: string[]): string {
  if (uris.length !== 1)
    throw new AuthError('peer_unauthorized', 'client certificate is not a valid SVID: more than one URI SAN', { check: 'client certificate' })
  const parsed = parseSpiffeId(uris[0]!)
  if (!parsed || parsed.segments.length === 0)
    throw new AuthError('peer_unauthorized', 'client certificate is not a valid SVID: malformed SPIFFE ID', { check: 'client certificate' })
  return parsed.id
}

/** Re-serialize one parsed element canonically (cache key, so equivalent spellings share an entry). */
function serializeElement(element: XfccElement): string {
  const parts: string[] = []
  for (const [key, values] of element) for (const value of values) parts.push(`${key}="${value.replace(/(["\\])/g, '\\$1')}"`)
  return parts.join(';')
}

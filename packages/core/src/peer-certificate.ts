import { createHash, type X509Certificate } from 'node:crypto'
import { AuthError } from './errors.js'
import type { PeerSocket } from './request.js'
import { parseSpiffeId } from './spiffe.js'
import { certificateExtensions, KEY_USAGE, readBasicConstraintsCa, readKeyUsage } from './internal/der.js'
import { memoizeByString } from './internal/memo.js'
import { parseSubjectAltName } from './internal/subject-alt-name.js'

/** The authorized TLS client certificate of a request, as exposed on `auth.peer`. */
export interface PeerCertificate {
  /** The SPIFFE ID (the one `spiffe://` URI SAN of an X509-SVID), if the certificate has one. */
  spiffeId?: string
  /** Every URI SAN. */
  uris: string[]
  /** Every DNS SAN. */
  dnsNames: string[]
  /** Subject distinguished name, as Node prints it. */
  subject: string
  /** RFC 8705 §3.1 thumbprint: base64url(SHA-256(DER)). Compared with a token's `cnf["x5t#S256"]`. */
  x5tS256: string
  /** Start of validity (absent for a bare proxy assertion). */
  validFrom?: Date
  /** End of validity; absent only when a proxy asserted the identity without the certificate (`verification: 'proxy-assertion'`). */
  validTo?: Date
  /** How the identity was established: the TLS socket, a forwarded certificate Callsign verified, or a proxy's bare assertion. */
  verification?: 'tls' | 'forwarded-certificate' | 'proxy-assertion'
}

// The SAN reader lives in internal/ so spiffe.ts (imported here) can read SANs without an import cycle.
export { parseSubjectAltName }

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'

/**
 * Refuse a certificate that is not fit to be a workload identity, SPIFFE or not (SPIFFE
 * X509-SVID §4.3, §4.4): a CA certificate (BasicConstraints `cA:TRUE`), a certificate whose key
 * usage allows signing certificates or CRLs (keyCertSign, cRLSign) or lacks digitalSignature
 * (checked only when the KeyUsage extension is present), or whose extended key usage, when
 * present, lacks clientAuth (RFC 5280 §4.2.1.12). Throws `AuthError('peer_unauthorized')`.
 *
 * A TLS stack authorizes a client's chain, not the leaf's role: OpenSSL accepts a CA certificate,
 * or a leaf with keyCertSign beside digitalSignature, as a client certificate.
 * @example
 * checkLeafCertificate(socket.getPeerX509Certificate()) // throws for a CA certificate
 */
export function checkLeafCertificate(cert: X509Certificate): void {
  const refuse = (reason: string): never => {
    throw new AuthError('peer_unauthorized', reason, { check: 'client certificate' })
  }
  let ca: boolean
  let keyUsage: number | undefined
  try {
    const extensions = certificateExtensions(cert.raw)
    ca = readBasicConstraintsCa(extensions)
    keyUsage = readKeyUsage(extensions)
  } catch {
    return refuse('client certificate has unreadable extensions')
  }
  if (ca || cert.ca) refuse('client certificate is a CA certificate')
  if (keyUsage !== undefined) {
    if (keyUsage & (KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign)) refuse('client certificate may sign certificates or CRLs')
    if (!(keyUsage & KEY_USAGE.digitalSignature)) refuse('client certificate is not for digital signatures')
  }
  const eku = cert.keyUsage
  if (Array.isArray(eku) && eku.length > 0 && !eku.includes(CLIENT_AUTH)) refuse('client certificate is not for client authentication')
}

/**
 * Describe an X.509 certificate. Throws `AuthError('peer_unauthorized')` if it is not fit to be
 * a workload identity ({@link checkLeafCertificate}), if its SANs cannot be read unambiguously, or
 * if it carries an invalid SVID: several `spiffe://` URIs, or a malformed one (SPIFFE X509-SVID
 * §2: exactly one URI SAN when it is an SVID).
 */
export function describeCertificate(cert: X509Certificate): PeerCertificate {
  const sans = parseSubjectAltName(cert.subjectAltName)
  if (!sans) throw new AuthError('peer_unauthorized', 'client certificate has unreadable subject alternative names', { check: 'client certificate' })
  checkLeafCertificate(cert)
  const uris = sans.filter(([type]) => type === 'URI').map(([, v]) => v)
  const dnsNames = sans.filter(([type]) => type === 'DNS').map(([, v]) => v)
  const spiffeUris = uris.filter((uri) => uri.toLowerCase().startsWith('spiffe:'))
  const peer: PeerCertificate = {
    uris,
    dnsNames,
    subject: cert.subject,
    x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
  }
  if (spiffeUris.length > 0) {
    if (spiffeUris.length > 1 || uris.length > 1) {
      throw new AuthError('peer_unauthorized', 'client certificate is not a valid SVID: more than one URI SAN', { check: 'client certificate' })
    }
    const parsed = parseSpiffeId(spiffeUris[0]!)
    if (!parsed || parsed.segments.length === 0) {
      throw new AuthError('peer_unauthorized', 'client certificate is not a valid SVID: malformed SPIFFE ID', { check: 'client certificate' })
    }
    peer.spiffeId = parsed.id
  }
  return peer
}

/**
 * Make a peer certificate read-only (its SAN lists too): it is cached per connection, or per
 * forwarded header element, and every request it authenticates gets the same object, so a handler
 * that changed `auth.peer.spiffeId` would otherwise change who the next request is.
 */
export function sealPeer(peer: PeerCertificate): PeerCertificate {
  Object.freeze(peer.uris)
  Object.freeze(peer.dnsNames)
  return Object.freeze(peer)
}

/** Result of looking at the TLS side of a request. */
export type PeerState =
  | { kind: 'none' }
  /**
   * `chain`: the intermediates above the leaf, as Node linked them from what the client sent, when
   * there are any (self-signed roots left out). Node hands them out once per connection (the first
   * `getPeerX509Certificate()` consumes them), so they are kept here for the trust-domain check.
   */
  | { kind: 'authorized'; peer: PeerCertificate; chain?: readonly X509Certificate[] }
  /** A certificate was sent but is not acceptable; `reason` is a fixed, client-safe string. */
  | { kind: 'rejected'; reason: string; cause?: unknown }

const NONE: PeerState = { kind: 'none' }
// A TLS connection carries one peer certificate for its whole life once renegotiation is off,
// so the (comparatively costly) parse happens once per connection, not once per request.
const byConnection = new WeakMap<object, PeerState>()

/**
 * The peer certificate of a connection, accepted only if the TLS stack authorized it
 * (`socket.authorized`, i.e. it chains to the server's `ca`). A certificate that was sent but not
 * authorized (untrusted CA, expired, not yet valid) is a rejection, never silently ignored.
 *
 * Side effect: TLS renegotiation is disabled on the socket so the cached identity cannot change.
 */
export function readPeerCertificate(connection: object | null | undefined): PeerState {
  const socket = connection as PeerSocket | null | undefined
  if (!socket || socket.encrypted !== true || typeof socket.getPeerX509Certificate !== 'function') return NONE
  const cached = byConnection.get(socket)
  if (cached) return cached
  let state: PeerState
  const cert = socket.getPeerX509Certificate()
  if (!cert) {
    state = NONE
  } else if (socket.authorized !== true) {
    const reason = socket.authorizationError
    state = { kind: 'rejected', reason: describeAuthorizationError(reason, cert), cause: reason }
  } else {
    try {
      const peer = sealPeer({ ...describeCertificate(cert), verification: 'tls' })
      const chain = sentChain(cert)
      state = chain.length > 0 ? { kind: 'authorized', peer, chain } : { kind: 'authorized', peer }
    } catch (error) {
      state = { kind: 'rejected', reason: (error as AuthError).message }
    }
  }
  socket.disableRenegotiation?.()
  byConnection.set(socket, state)
  return state
}

/**
 * The host part of a peer's SPIFFE ID exactly as `new URL(spiffeId).host` reads it (the trust
 * domain), memoized per ID string: the same few callers send every request.
 */
export const spiffeIdHost = memoizeByString((spiffeId) => new URL(spiffeId).host)

function describeAuthorizationError(reason: unknown, cert: X509Certificate): string {
  const code = typeof reason === 'string' ? reason : ((reason as { code?: string } | null)?.code ?? String(reason ?? ''))
  switch (code) {
    case 'INVALID_PURPOSE':
      // OpenSSL found a certificate of the chain unfit for a TLS client: say why when it is the leaf.
      return leafRefusal(cert) ?? 'client certificate is not trusted'
    case 'CERT_HAS_EXPIRED':
      return 'client certificate has expired'
    case 'CERT_NOT_YET_VALID':
      return 'client certificate is not yet valid'
    case 'CERT_REVOKED':
      return 'client certificate is revoked'
    default:
      return 'client certificate is not trusted'
  }
}

const MAX_SENT_CHAIN = 8

/**
 * The certificates Node linked above the leaf, without self-signed ones: Node adds the root of the
 * verified path from the server's own `ca`, and a root is never needed as an intermediate (a path
 * to it ends at an anchor or nowhere). So the usual leaf-under-a-root connection keeps nothing.
 */
function sentChain(leaf: X509Certificate): readonly X509Certificate[] {
  const chain: X509Certificate[] = []
  for (let cert = leaf.issuerCertificate, n = 0; cert && n < MAX_SENT_CHAIN; cert = cert.issuerCertificate, n++) {
    if (!cert.checkIssued(cert)) chain.push(cert)
  }
  return Object.freeze(chain)
}

function leafRefusal(cert: X509Certificate): string | undefined {
  try {
    checkLeafCertificate(cert)
    return undefined
  } catch (error) {
    return (error as AuthError).message
  }
}

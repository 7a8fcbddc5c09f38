import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import { x509 } from './x509-provider.js'

/**
 * A client certificate the issuer's TLS server verified against `tls.clientCa`.
 *
 * @internal
 */
export interface ClientCertificate {
  /** base64url(SHA-256(DER)): the RFC 8705 §3.1 `cnf["x5t#S256"]` value. */
  x5tS256: string
  /** URI SANs, read with an ASN.1 parser (never by splitting Node's `subjectaltname` string). */
  uris: string[]
  /** basicConstraints cA:TRUE: a CA certificate is no client identity. */
  isCa: boolean
}

const read = new WeakMap<TLSSocket, ClientCertificate | undefined>()

/**
 * The verified client certificate of a connection, read once per connection.
 *
 * @param socket - The request's socket.
 * @returns The certificate, or `undefined` for plain HTTP, no certificate, or one that did not chain to `tls.clientCa`.
 * @internal
 */
export function clientCertificate(socket: Socket): ClientCertificate | undefined {
  if (!(socket instanceof TLSSocket)) return undefined
  if (read.has(socket)) return read.get(socket)
  let found: ClientCertificate | undefined
  // rejectUnauthorized is off (so a bad certificate gets an OAuth error, not a handshake failure): check it here.
  const raw = socket.authorized ? socket.getPeerCertificate().raw : undefined
  if (raw !== undefined && raw.length > 0) {
    const cert = new x509.X509Certificate(new Uint8Array(raw))
    const names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []
    found = {
      x5tS256: createHash('sha256').update(raw).digest('base64url'),
      uris: names.filter((name) => name.type === 'url').map((name) => name.value),
      isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca === true,
    }
  }
  read.set(socket, found)
  return found
}

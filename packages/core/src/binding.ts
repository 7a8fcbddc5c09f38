import type { VerifiedToken } from './access-token.js'
import type { Credentials } from './credentials.js'
import { invalidToken } from './errors.js'
import type { PeerCertificate } from './peer-certificate.js'
import type { TokenBinding } from './principal.js'

/**
 * Sender constraint of a token presented with `credentials` over a connection with `peer`.
 * - `cnf["x5t#S256"]` (RFC 8705 §3): accepted only over a connection whose authorized client
 *   certificate has exactly that SHA-256 thumbprint → `mtls`.
 * - `cnf.jkt` (RFC 9449 §6): a DPoP-bound token; with the `Bearer` scheme it is a downgrade and refused.
 * - anything else → `bearer` (not sender-constrained).
 */
export function checkBinding(token: VerifiedToken, credentials: Credentials, peer: PeerCertificate | undefined): TokenBinding {
  const cnf = token.claims.cnf
  if (cnf === undefined) return 'bearer'
  if (cnf.jkt !== undefined) {
    if (credentials.scheme === 'bearer') throw invalidToken('DPoP-bound token presented as a bearer token')
  }
  const thumbprint = cnf['x5t#S256']
  if (thumbprint !== undefined) {
    if (typeof thumbprint !== 'string') throw invalidToken('malformed cnf claim')
    if (!peer) throw invalidToken('certificate-bound token presented without a client certificate')
    if (peer.x5tS256 !== thumbprint) throw invalidToken('token is bound to another client certificate')
    return 'mtls'
  }
  return 'bearer'
}

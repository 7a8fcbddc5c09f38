import type { X509Certificate } from 'node:crypto'
import { AuthError } from '../errors.js'

const MAX_CHAIN_DEPTH = 5

/**
 * Build a certification path from `leaf` to one of `anchors` through the given intermediates,
 * as a TLS stack would: issuer name and signature checked with `X509Certificate.checkIssued` and
 * `verify`, intermediates must be CAs, at most five of them, and every certificate of the path
 * (anchor included) within its validity period at `now`. The leaf's own fitness as an identity is
 * not checked here. Throws `AuthError('peer_unauthorized')`; revocation is not checked.
 * Returns the path: the leaf, the intermediates used, the anchor.
 */
export function buildCertificatePath(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  anchors: readonly X509Certificate[],
  now: number,
): X509Certificate[] {
  const refuse = (reason: string): never => {
    throw new AuthError('peer_unauthorized', reason, { check: 'client certificate' })
  }
  const inValidity = (cert: X509Certificate): void => {
    if (now < Date.parse(cert.validFrom)) refuse('client certificate is not yet valid')
    if (now > Date.parse(cert.validTo)) refuse('client certificate has expired')
  }
  inValidity(leaf)
  const path = [leaf]
  let current = leaf
  for (let depth = 0; depth <= MAX_CHAIN_DEPTH; depth++) {
    const anchor = anchors.find((candidate) => current.checkIssued(candidate) && current.verify(candidate.publicKey))
    if (anchor) {
      inValidity(anchor)
      path.push(anchor)
      return path
    }
    const next = intermediates.find(
      (candidate) => candidate !== current && candidate.ca && current.checkIssued(candidate) && current.verify(candidate.publicKey),
    )
    if (!next) break
    inValidity(next)
    path.push(next)
    current = next
  }
  return refuse('client certificate is not trusted')
}

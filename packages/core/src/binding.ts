import type { VerifiedToken } from './access-token.js'
import type { Credentials } from './credentials.js'
import { normalizeHtu, verifyDpopProof, type ResolvedDpop } from './dpop.js'
import type { EnvironmentConfig } from './environment.js'
import { AuthError, invalidToken } from './errors.js'
import type { PeerCertificate } from './peer-certificate.js'
import type { SenderConstraintMode } from './policy.js'
import type { TokenBinding } from './principal.js'
import { requestPath, type AuthRequest } from './request.js'

/** What the binding checks read: DPoP settings, the guard's sender constraint, the clock and its tolerance. */
export type BindingConfig = { dpop: ResolvedDpop; senderConstraint: SenderConstraintMode } & Pick<EnvironmentConfig, 'now' | 'clockToleranceSeconds'>

/**
 * Sender constraint of a token presented with `credentials` over a connection with `peer`.
 * - `cnf["x5t#S256"]` (RFC 8705 §3): accepted only over a connection whose authorized client
 *   certificate has exactly that SHA-256 thumbprint.
 * - `cnf.jkt` (RFC 9449 §6): accepted only with the `DPoP` scheme and a valid proof by that key;
 *   with `Bearer` it is a downgrade and refused. The `DPoP` scheme with a token that has no
 *   `cnf.jkt` is refused too.
 * Returns `dpop` when a proof was checked, else `mtls` for a certificate-bound token, else `bearer`
 * (refused when `senderConstraint` is `'required'` or DPoP is required).
 */
export function checkBinding(
  token: VerifiedToken,
  credentials: Credentials,
  peer: PeerCertificate | undefined,
  request: AuthRequest,
  config: BindingConfig,
): TokenBinding | Promise<TokenBinding> {
  // Verification checked `cnf`: only methods enforced here, each a non-empty string (`checkClaimShapes`).
  const cnf = token.claims.cnf
  const jkt = cnf?.jkt
  const thumbprint = cnf?.['x5t#S256']

  if (thumbprint !== undefined) {
    if (!peer) throw invalidToken('certificate-bound token presented without a client certificate', 'binding')
    if (peer.x5tS256 !== thumbprint) throw invalidToken('token is bound to another client certificate', 'binding')
  }
  if (credentials.scheme === 'dpop') {
    if (jkt === undefined) throw invalidToken('DPoP scheme used with a token that is not DPoP-bound', 'binding')
    return verifyDpopProof(
      credentials.proof,
      { method: request.method ?? 'GET', htu: expectedHtu(request, config), accessToken: credentials.token, jkt },
      {
        algorithms: config.dpop.algorithms,
        maxProofAgeSeconds: config.dpop.maxProofAgeSeconds,
        clockToleranceSeconds: Math.min(config.clockToleranceSeconds, 60),
        now: config.now,
        nonces: config.dpop.nonces,
        replayStore: config.dpop.replayStore,
        replayStoreTimeoutMs: config.dpop.replayStoreTimeoutMs,
      },
    ).then(() => 'dpop' as const)
  }
  if (jkt !== undefined) throw invalidToken('DPoP-bound token presented as a bearer token', 'binding')
  if (config.dpop.mode === 'required') throw invalidToken('a DPoP-bound token is required', 'binding')
  if (thumbprint !== undefined) return 'mtls'
  if (config.senderConstraint === 'required') throw invalidToken('a sender-constrained token is required', 'binding')
  return 'bearer'
}

/**
 * The `htu` a proof must carry for this request: the configured public origin (the one whose
 * host matches the request's `Host`, else the first) or the request's own scheme and `Host`,
 * plus the path of the original request target; never `X-Forwarded-*`.
 */
export function expectedHtu(request: AuthRequest, config: Pick<BindingConfig, 'dpop'>): string {
  const path = requestPath(request).split('#', 1)[0]!
  const host = typeof request.headers.host === 'string' ? request.headers.host : ''
  let origin: string | undefined
  const origins = config.dpop.origins
  if (origins) {
    let requestHost: string | undefined
    try {
      requestHost = new URL(`https://${host}`).host
    } catch {
      requestHost = undefined
    }
    origin = origins.find((candidate) => new URL(candidate).host === requestHost) ?? origins[0]
  } else {
    // Host is uri-host [":" port] (RFC 9110 §7.2): empty, or with "/", "\\", "?", "#" or "@", the path would move into the authority.
    if (host === '' || /[/\\?#@]/.test(host))
      throw new AuthError('invalid_request', 'request target cannot be checked against a DPoP proof', { check: 'credentials' })
    const tls = (request.socket as { encrypted?: boolean } | null | undefined)?.encrypted === true
    origin = `${tls ? 'https' : 'http'}://${host}`
  }
  const htu = normalizeHtu(`${origin}${path.startsWith('/') ? path : `/${path}`}`)
  if (!htu) throw new AuthError('invalid_request', 'request target cannot be checked against a DPoP proof', { check: 'credentials' })
  return htu
}

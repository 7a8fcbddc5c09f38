import type { VerifiedToken } from './access-token.js'
import { AuthError, invalidToken } from './errors.js'
import type { ResolvedConfig } from './options.js'
import type { PeerCertificate } from './peer-certificate.js'
import { tokenCaller } from './principal.js'
import { isWorkloadSpiffeId } from './spiffe.js'
import { memoizeByString } from './internal/memo.js'

/**
 * The workload a token says is calling: its nearest actor (`act.sub`), else its `client_id`,
 * `azp` or `sub` (the caller order of `toAuthContext`), as a SPIFFE ID: used as is when it is one, mapped through `clientIds` otherwise.
 * `undefined` when the token names no workload that can be compared with a certificate.
 */
export function tokenWorkload(token: VerifiedToken, config: ResolvedConfig): string | undefined {
  const named = tokenCaller(token)
  if (named === undefined) return undefined
  const mapped = config.clientIds.get(named)
  if (mapped !== undefined) return mapped
  return isWorkload(named) ? named : undefined
}

// The token's caller is one of the same few services on every request.
const isWorkload = memoizeByString(isWorkloadSpiffeId)

/**
 * Caller consistency: a token that names its calling workload must be presented by that
 * workload. When the connection's authorized certificate names another SPIFFE ID, the token was
 * relayed (or stolen) and is refused with 401 `invalid_token`.
 */
export function checkCallerConsistency(token: VerifiedToken, peer: PeerCertificate | undefined, config: ResolvedConfig): void {
  if (!config.callerConsistency || peer?.spiffeId === undefined) return
  const named = tokenWorkload(token, config)
  if (named !== undefined && named !== peer.spiffeId) throw invalidToken('token was issued to another service')
}

/**
 * RFC 8693 delegation bounds: chain depth (`delegation.maxDepth`, 401), every actor within
 * `delegation.actors`, each hop within `delegation.hops` (403, caller side), and `may_act`
 * (RFC 8693 §4.4): when the token carries it, the acting party must be the one it names.
 */
export function checkDelegation(token: VerifiedToken, peer: PeerCertificate | undefined, config: ResolvedConfig): void {
  const { actors } = token
  const { maxDepth, actors: allowed, hops } = config.delegation
  if (actors.length > maxDepth) throw invalidToken('delegation chain too deep')
  if (allowed && actors.some((actor) => !allowed.some((pattern) => pattern.matches(actor)))) {
    throw new AuthError('caller_forbidden', 'the delegation chain includes an actor that is not allowed', { side: 'caller' })
  }
  if (hops && actors.length > 0) {
    if (actors.length > hops.length) {
      throw new AuthError('caller_forbidden', 'the delegation chain is longer than allowed', { side: 'caller' })
    }
    actors.forEach((actor, i) => {
      if (!hops[i]!.some((pattern) => pattern.matches(actor))) {
        throw new AuthError('caller_forbidden', 'the delegation chain includes an actor that is not allowed', { side: 'caller' })
      }
    })
  }
  const mayAct = token.claims.may_act
  if (mayAct !== undefined) {
    if (typeof mayAct !== 'object' || mayAct === null || Array.isArray(mayAct) || typeof (mayAct as { sub?: unknown }).sub !== 'string') {
      throw invalidToken('malformed may_act claim')
    }
    const clientId = token.claims.client_id
    const actingParty = actors[0] ?? (clientId !== undefined && clientId !== token.claims.sub ? (peer?.spiffeId ?? clientId) : undefined)
    const allowedActor = (mayAct as { sub: string }).sub
    // A plain client id counts as the workload it is mapped to (`clientIds`).
    const matches =
      actingParty === allowedActor ||
      (actingParty !== undefined && (config.clientIds.get(actingParty) === allowedActor || config.clientIds.get(allowedActor) === actingParty))
    if (actingParty !== undefined && !matches) {
      throw new AuthError('caller_forbidden', 'the subject does not allow this actor (may_act)', { side: 'caller' })
    }
  }
}

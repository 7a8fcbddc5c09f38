import type { VerifiedToken } from './access-token.js'
import { AuthError, invalidToken } from './errors.js'
import type { PeerCertificate } from './peer-certificate.js'
import { tokenCaller } from './principal.js'
import { compileCallerPattern, isWorkloadSpiffeId, parseSpiffeId, type CallerPattern } from './spiffe.js'
import { memoizeByString } from './internal/memo.js'
import { checkKeys, fail, isPlainObject, oneOf, optionKeys, positive, stringList } from './internal/validate.js'

/** Bounds on RFC 8693 delegation chains (`act`). */
export interface DelegationOptions {
  /** Longest `act` chain accepted. Default 4 (at most 8). */
  maxDepth?: number
  /** Caller patterns every actor of the chain must match. Default: any. */
  actors?: string[]
  /** Per-hop caller patterns, nearest actor first: `hops[0]` for `act.sub`, `hops[1]` for `act.act.sub` ... */
  hops?: string[][]
}

/** `'enforce'` (default): a token naming one workload presented by another is refused. `'off'`: not checked. */
export type CallerConsistencyMode = 'enforce' | 'off'

export interface ResolvedDelegation {
  maxDepth: number
  actors: readonly CallerPattern[] | undefined
  hops: readonly (readonly CallerPattern[])[] | undefined
}

/** Who a token may be presented by and through whom: what caller consistency and delegation checks read. */
export interface DelegationConfig {
  callerConsistency: boolean
  /** OAuth client ids mapped to the SPIFFE ID of their workload. */
  clientIds: ReadonlyMap<string, string>
  delegation: ResolvedDelegation
}

const DELEGATION_KEYS = optionKeys<DelegationOptions>()(['maxDepth', 'actors', 'hops'])

/** `callerConsistency`, `clientIds` and `delegation` with their defaults. */
export function resolveDelegationConfig(options: { callerConsistency?: unknown; clientIds?: unknown; delegation?: unknown }): DelegationConfig {
  return {
    callerConsistency: oneOf<CallerConsistencyMode>(options.callerConsistency, 'callerConsistency', ['enforce', 'off'], 'enforce') === 'enforce',
    clientIds: resolveClientIds(options.clientIds),
    delegation: resolveDelegation(options.delegation),
  }
}

function resolveClientIds(value: unknown): ReadonlyMap<string, string> {
  const map = new Map<string, string>()
  if (value === undefined) return map
  if (!isPlainObject(value)) return fail('clientIds', 'must be an object mapping client ids to SPIFFE IDs')
  for (const [clientId, spiffeId] of Object.entries(value)) {
    const parsed = typeof spiffeId === 'string' ? parseSpiffeId(spiffeId) : undefined
    if (!parsed || parsed.segments.length === 0)
      fail(`clientIds[${JSON.stringify(clientId)}]`, `must be a workload SPIFFE ID (got ${JSON.stringify(spiffeId)})`)
    map.set(clientId, spiffeId as string)
  }
  return map
}

function resolveDelegation(value: unknown): ResolvedDelegation {
  const input = (value ?? {}) as Record<string, unknown>
  if (!isPlainObject(input)) return fail('delegation', 'must be an object')
  checkKeys(input, DELEGATION_KEYS, 'delegation')
  const maxDepth = positive(input.maxDepth, 'delegation.maxDepth', 4, { integer: true, max: 8 })
  let actors: CallerPattern[] | undefined
  if (input.actors !== undefined) {
    actors = stringList(input.actors, 'delegation.actors').map((pattern, i) => compileCallerPattern(pattern, `delegation.actors[${i}]`))
  }
  let hops: CallerPattern[][] | undefined
  if (input.hops !== undefined) {
    if (!Array.isArray(input.hops) || input.hops.length === 0) fail('delegation.hops', 'must be a non-empty array of pattern arrays, nearest actor first')
    hops = (input.hops as unknown[]).map((hop, h) =>
      stringList(hop, `delegation.hops[${h}]`).map((pattern, i) => compileCallerPattern(pattern, `delegation.hops[${h}][${i}]`)),
    )
  }
  return Object.freeze({ maxDepth, actors, hops })
}

/**
 * The workload a token says is calling: its nearest actor (`act.sub`), else its `client_id`,
 * `azp` or `sub` (the caller order of `toAuthContext`), as a SPIFFE ID: used as is when it is one, mapped through `clientIds` otherwise.
 * `undefined` when the token names no workload that can be compared with a certificate.
 */
export function tokenWorkload(token: VerifiedToken, config: Pick<DelegationConfig, 'clientIds'>): string | undefined {
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
export function checkCallerConsistency(token: VerifiedToken, peer: PeerCertificate | undefined, config: DelegationConfig): void {
  if (!config.callerConsistency || peer?.spiffeId === undefined) return
  const named = tokenWorkload(token, config)
  if (named !== undefined && named !== peer.spiffeId) throw invalidToken('token was issued to another service', 'caller')
}

/**
 * RFC 8693 delegation bounds: chain depth (`delegation.maxDepth`, 401), every actor within
 * `delegation.actors`, each hop within `delegation.hops` (403, caller side), and `may_act`
 * (RFC 8693 §4.4): when the token carries it, the acting party must be the one it names.
 */
export function checkDelegation(token: VerifiedToken, peer: PeerCertificate | undefined, config: DelegationConfig): void {
  const { actors } = token
  const { maxDepth, actors: allowed, hops } = config.delegation
  if (actors.length > maxDepth) throw invalidToken('delegation chain too deep', 'delegation')
  if (allowed && actors.some((actor) => !allowed.some((pattern) => pattern.matches(actor)))) {
    throw new AuthError('caller_forbidden', 'the delegation chain includes an actor that is not allowed', { side: 'caller', check: 'delegation' })
  }
  if (hops && actors.length > 0) {
    if (actors.length > hops.length) {
      throw new AuthError('caller_forbidden', 'the delegation chain is longer than allowed', { side: 'caller', check: 'delegation' })
    }
    actors.forEach((actor, i) => {
      if (!hops[i]!.some((pattern) => pattern.matches(actor))) {
        throw new AuthError('caller_forbidden', 'the delegation chain includes an actor that is not allowed', { side: 'caller', check: 'delegation' })
      }
    })
  }
  const mayAct = token.claims.may_act
  if (mayAct !== undefined) {
    if (!isPlainObject(mayAct) || typeof mayAct.sub !== 'string') {
      throw invalidToken('malformed may_act claim', 'delegation')
    }
    const clientId = token.claims.client_id
    const actingParty = actors[0] ?? (clientId !== undefined && clientId !== token.claims.sub ? (peer?.spiffeId ?? clientId) : undefined)
    const allowedActor = (mayAct as { sub: string }).sub
    // A plain client id counts as the workload it is mapped to (`clientIds`).
    const matches =
      actingParty === allowedActor ||
      (actingParty !== undefined && (config.clientIds.get(actingParty) === allowedActor || config.clientIds.get(allowedActor) === actingParty))
    if (actingParty !== undefined && !matches) {
      throw new AuthError('caller_forbidden', 'the subject does not allow this actor (may_act)', { side: 'caller', check: 'delegation' })
    }
  }
}

import type { AuthCheck, AuthErrorCode } from './errors.js'
import type { PeerCertificate } from './peer-certificate.js'
import type { AuthContext, CallerIdentity, TokenBinding } from './principal.js'

/**
 * One structured record per request, for audit logs and alerting. Never contains the token, the
 * DPoP proof, claims beyond the identities, or certificate contents beyond the identity.
 *
 * A request that `requireAuth` checks produces one event with `stage: 'authorize'`; a request the
 * guard refuses, or one no rule checks, produces one event with `stage: 'authenticate'`.
 */
export interface DecisionEvent {
  /** `allowed`, `refused`, or `anonymous` (no credentials with `credentials: 'optional'`, no rule checked). */
  outcome: 'allowed' | 'refused' | 'anonymous'
  /** Which step decided: the guard (`callsign()`) or a rule (`requireAuth`). */
  stage: 'authenticate' | 'authorize'
  /** False in dry-run (`enforce: false`): a refusal was reported and the request let through. */
  enforced: boolean
  /** The HTTP status the decision maps to (200 when allowed). */
  status: number
  /** Stable refusal code. */
  code?: AuthErrorCode
  /** Fixed, client-safe reason text. */
  reason?: string
  /** For a refusal: the check that failed, named as in `callsign explain` (`time`, `audience`, `binding`, `rule` ...). */
  check?: AuthCheck
  /** Dry run only: the explanation of the refusal, as `explain()` structures it (the failing check). */
  explanation?: Array<{ check: AuthCheck; ok: boolean | undefined; detail: string }>
  method?: string
  /** Request path without the query string. */
  path?: string
  scheme?: 'bearer' | 'dpop'
  caller?: CallerIdentity
  /** `sub` of the user the call is made for. */
  user?: string
  /** Delegation chain, nearest first. */
  actors?: string[]
  issuer?: string
  binding?: TokenBinding
  peer?: { spiffeId?: string; verification?: PeerCertificate['verification']; validTo?: string; daysLeft?: number }
  /** The peer certificate expires within `peerExpiryWarningDays`. */
  peerExpiringSoon?: boolean
  /** Time spent in Callsign for this request, in milliseconds. */
  durationMs: number
  /** ISO 8601 time of the decision. */
  time: string
}

export type DecisionHook = (event: DecisionEvent) => void

/** The identity part of an event, from an auth context. */
export function describeAuth(auth: AuthContext | undefined, peerExpiryWarningDays: number | undefined, now: number): Partial<DecisionEvent> {
  if (!auth) return {}
  const event: Partial<DecisionEvent> = {
    caller: auth.caller,
    binding: auth.binding,
    actors: auth.actors,
  }
  if (auth.issuer !== undefined) event.issuer = auth.issuer
  if (auth.user) event.user = auth.user.sub
  if (auth.peer) event.peer = describePeer(auth.peer, peerExpiryWarningDays, now, event)
  return event
}

export function describePeer(
  peer: PeerCertificate,
  warningDays: number | undefined,
  now: number,
  into: Partial<DecisionEvent>,
): NonNullable<DecisionEvent['peer']> {
  const out: NonNullable<DecisionEvent['peer']> = {}
  if (peer.spiffeId !== undefined) out.spiffeId = peer.spiffeId
  if (peer.verification !== undefined) out.verification = peer.verification
  if (peer.validTo) {
    out.validTo = peer.validTo.toISOString()
    out.daysLeft = Math.floor((peer.validTo.getTime() - now) / 86_400_000)
    into.peerExpiringSoon = expiresSoon(peer, warningDays, now)
  }
  return out
}

/**
 * True when a certificate is close to its end: within `warningDays` when given, else with less
 * than a tenth of its lifetime left.
 */
export function expiresSoon(peer: PeerCertificate, warningDays: number | undefined, now: number): boolean {
  if (!peer.validTo) return false
  const left = peer.validTo.getTime() - now
  if (warningDays !== undefined) return left < warningDays * 86_400_000
  if (!peer.validFrom) return false
  return left < (peer.validTo.getTime() - peer.validFrom.getTime()) / 10
}

/** Call a hook without letting it break the request. */
export function emit(hook: DecisionHook | undefined, event: DecisionEvent, warn: (message: string, details?: Record<string, unknown>) => void): void {
  if (!hook) return
  try {
    hook(event)
  } catch (error) {
    warn('callsign: onDecision hook threw', { reason: (error as Error).message })
  }
}

/** A pino/bunyan-style logger: `logger.info(object, message)`. `console` also works. */
export type LevelLogger = Partial<Record<'trace' | 'debug' | 'info' | 'warn' | 'error', (object: unknown, message?: string) => void>>

/**
 * A ready `onDecision` hook that writes each event to a structured logger at `level` (refusals
 * at `warn` when `level` is lower), as `{ callsign: event }` with the message `callsign decision`.
 *
 * @example
 * import pino from 'pino'
 * app.use(callsign({ ...options, onDecision: logDecisions(pino()) }))
 */
export function logDecisions(logger: LevelLogger, level: 'trace' | 'debug' | 'info' = 'info'): DecisionHook {
  return (event) => {
    const write = event.outcome === 'refused' ? (logger.warn ?? logger[level]) : logger[level]
    write?.call(logger, { callsign: event }, 'callsign decision')
  }
}

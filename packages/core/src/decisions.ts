import type { Credentials } from './credentials.js'
import { describeAuth, emit, expiresSoon, type DecisionEvent } from './decision-events.js'
import { AuthError } from './errors.js'
import { refusalDetail } from './explain-step.js'
import { applyChallenge, type ChallengeContext } from './http-mapping.js'
import { isPromise } from './internal/is-promise.js'
import type { ResolvedConfig } from './options.js'
import { authorize, compileRule, type CompiledRule, type OnBehalfOfMode } from './policy.js'
import type { AuthContext } from './principal.js'
import { headerValues, requestPath, type AuthRequest } from './request.js'
import type { Telemetry } from './telemetry.js'

type Scheme = Credentials['scheme']

/** What the guard's pipeline learned about a request before it finished or failed. */
export interface Seen {
  /** The scheme of the credentials read (after a refusal: the scheme its challenge used). */
  scheme: Scheme | undefined
  /** The credentials were being read (the peer checks had passed). */
  reading: boolean
}

/** One request's trip through the guard, kept on the request once decided. */
export interface RequestState extends Seen {
  readonly recorder: DecisionRecorder
  /** Decision events are wanted (an onDecision hook or OpenTelemetry). */
  readonly observed: boolean
  /** `performance.now()` when the guard began (0 when not observed). */
  readonly started: number
  auth: AuthContext | undefined
  /** Headers for the response of an accepted request (`DPoP-Nonce`). */
  headers: Record<string, string> | undefined
  /** The guard refused the request but does not enforce (dry run). */
  refused: AuthError | undefined
  /** The authenticate-stage event, emitted by `requireAuth` (merged) or when the request closes. */
  pending: DecisionEvent | undefined
  /** What the rules that authorized the request promise its handlers ({@link authorizeRoute}), as bits. */
  promises: number
}

// What the guard decided about each request, so `requireAuth` (possibly in another adapter
// layer) finds both the result and the guard's policy. A module-private symbol: no other code can
// name it, and unlike a WeakMap entry it costs no ephemeron work in every scavenge (measured on
// the reused-token path, see bench/README.md).
const DECISION = Symbol('callsign.decision')
type Decided = { [DECISION]?: RequestState }
const decisionOf = (request: object): RequestState | undefined => (request as Decided)[DECISION]

/**
 * A guard's record of its decisions: each one kept on its request for `requireAuth`, reported as a
 * decision event (hook, OpenTelemetry), and turned into a challenge when it is a refusal.
 */
export class DecisionRecorder {
  readonly config: ResolvedConfig
  /** OpenTelemetry, once loaded in the background (until then, no spans or counters). */
  telemetry: Telemetry | undefined
  readonly #dpopAlgs: string | undefined
  readonly #bearer: boolean
  // Logged once per certificate (bounded), whether or not anyone listens to decision events.
  readonly #peerWarned = new Set<string>()

  constructor(config: ResolvedConfig) {
    this.config = config
    this.#dpopAlgs = config.dpop.mode === 'off' ? undefined : config.dpop.algs
    this.#bearer = config.dpop.mode !== 'required'
  }

  /** What a challenge needs. The server nonce (an HMAC) is computed only for the refusal that hands it out. */
  challenge(scheme: Scheme | undefined, error?: AuthError): ChallengeContext {
    return {
      realm: this.config.realm,
      dpopAlgs: this.#dpopAlgs,
      bearer: this.#bearer,
      scheme,
      dpopNonce: error?.code === 'use_dpop_nonce' ? this.config.dpop.nonces?.current() : undefined,
      resourceMetadata: this.config.resourceMetadata?.url,
    }
  }

  /** A new request's state. No event is built when nothing would receive it (no hook; OpenTelemetry absent or without an SDK). */
  begin(): RequestState {
    const observed = this.config.onDecision !== undefined || this.telemetry?.active() === true
    const started = observed ? performance.now() : 0
    return {
      recorder: this,
      observed,
      started,
      scheme: undefined,
      reading: false,
      auth: undefined,
      headers: undefined,
      refused: undefined,
      pending: undefined,
      promises: 0,
    }
  }

  /** The pipeline gave `auth` (`undefined`: anonymous): record it on the request, report it, return it. */
  resolved(request: AuthRequest, state: RequestState, auth: AuthContext | undefined): AuthContext | undefined {
    state.auth = auth
    if (state.observed) this.#pend(request, state)
    if (auth?.peer) this.#checkPeerExpiry(auth)
    if (state.scheme === 'dpop') {
      const nonce = this.config.dpop.nonces?.current()
      if (nonce) state.headers = { 'dpop-nonce': nonce }
    }
    ;(request as Decided)[DECISION] = state
    return auth
  }

  /** The pipeline threw `error`: report the refusal and throw it with its challenge (or, in dry run, record it). */
  rejected(request: AuthRequest, state: RequestState, error: unknown): undefined {
    // Not a refusal: a server error, always an Error (frameworks treat a falsy one as success).
    if (!(error instanceof AuthError)) throw error instanceof Error ? error : new Error(`Callsign: authentication failed: ${String(error)}`, { cause: error })
    state.scheme = this.#schemeSent(request, state)
    if (error.code === 'credentials_missing' && this.config.credentials === 'optional') {
      this.resolved(request, state, undefined)
      return undefined
    }
    const refused = applyChallenge(error, this.challenge(state.scheme, error))
    if (state.observed) {
      const event = this.#event(request, 'authenticate', state.started, state.scheme, this.config.enforce)
      describeRefusal(event, refused)
      this.report(event)
    }
    if (this.config.enforce) throw refused
    state.refused = refused
    ;(request as Decided)[DECISION] = state
    return undefined
  }

  /** {@link authorizeRequest} for a request this guard decided. */
  authorize(request: AuthRequest, state: RequestState, rule: CompiledRule): AuthContext | undefined {
    const { config } = this
    const enforce = rule.enforce ?? config.enforce
    const started = state.observed ? performance.now() : 0
    const refusal = this.#refusalBy(state, rule)
    // A guard refusal in dry run was reported already (unless this rule enforces it); otherwise one event for this rule's decision,
    if (state.observed && (!state.refused || enforce !== config.enforce)) {
      // merged with the authenticate step's event when it is still pending (one event per request).
      const pending = state.pending ?? {
        ...this.#event(request, 'authorize', started, state.scheme, enforce),
        ...describeAuth(state.auth, config.peerExpiryWarningDays, config.now()),
      }
      state.pending = undefined
      const event: DecisionEvent = { ...pending, stage: 'authorize', enforced: enforce, durationMs: pending.durationMs + (performance.now() - started) }
      if (refusal) describeRefusal(event, refusal)
      else event.outcome = 'allowed'
      this.report(event)
    }
    if (refusal && enforce) throw refusal
    return state.auth
  }

  /** Emit an event to OpenTelemetry and the `onDecision` hook. */
  report(event: DecisionEvent): void {
    this.telemetry?.annotate(event)
    this.telemetry?.decision(event)
    emit(this.config.onDecision, event, this.config.logger.warn.bind(this.config.logger))
  }

  /** The refusal `rule` gives a decided request: the guard's own (dry run), no credentials, or the rule's. */
  #refusalBy(state: RequestState, rule: CompiledRule): AuthError | undefined {
    if (state.refused) return state.refused
    if (!state.auth)
      return applyChallenge(new AuthError('credentials_missing', 'an access token is required', { check: 'credentials' }), this.challenge(state.scheme))
    try {
      authorize(state.auth, rule, this.config.callers)
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      return applyChallenge(error, this.challenge(state.scheme))
    }
    return undefined
  }

  /** Keep an accepted request's event until a rule checks it or the request ends (one event per request). */
  #pend(request: AuthRequest, state: RequestState): void {
    const { config } = this
    const event = this.#event(request, 'authenticate', state.started, state.scheme, config.enforce)
    Object.assign(event, describeAuth(state.auth, config.peerExpiryWarningDays, config.now()), { outcome: state.auth ? 'allowed' : 'anonymous' })
    state.pending = event
    this.telemetry?.annotate(event) // now, while the request's span is still open
    onClose(request, () => flush(state))
  }

  #event(request: AuthRequest, stage: DecisionEvent['stage'], started: number, scheme: Scheme | undefined, enforced: boolean): DecisionEvent {
    const event: DecisionEvent = {
      outcome: 'allowed',
      stage,
      enforced,
      status: 200,
      path: requestPath(request),
      durationMs: performance.now() - started,
      time: new Date(this.config.now()).toISOString(),
    }
    if (request.method !== undefined) event.method = request.method
    if (scheme !== undefined) event.scheme = scheme
    return event
  }

  /**
   * The scheme for a refusal's challenge: the one read, else, when the refusal came from reading
   * the credentials, `dpop` if the Authorization header names it. Looked up only on this error path:
   * reading `request.headers` makes Node build the whole header object.
   */
  #schemeSent(request: AuthRequest, seen: Seen): Scheme | undefined {
    if (seen.scheme !== undefined || !seen.reading || this.#dpopAlgs === undefined) return seen.scheme
    const authorization = headerValues(request, 'authorization')[0]
    return authorization !== undefined && /^\s*dpop(?:\s|$)/i.test(authorization) ? 'dpop' : undefined
  }

  #checkPeerExpiry(auth: AuthContext): void {
    const { config } = this
    const peer = auth.peer
    if (!peer || !expiresSoon(peer, config.peerExpiryWarningDays, config.now())) return
    const key = peer.x5tS256
    if (this.#peerWarned.has(key) || this.#peerWarned.size >= 1000) return
    this.#peerWarned.add(key)
    config.logger.warn('callsign: a peer certificate expires soon', { caller: auth.caller.id, validTo: peer.validTo?.toISOString() })
  }
}

/**
 * Run `accept` with the guard's decision for `request`, or `refuse` with what it threw: at once
 * when {@link Callsign.check} decided without a promise, otherwise once it settles. What every
 * adapter's middleware does with a request. `guard` is a `Callsign` (anything with its `check`).
 */
export function afterCheck<R>(
  guard: { check(request: AuthRequest): AuthContext | undefined | Promise<AuthContext | undefined> },
  request: AuthRequest,
  accept: (auth: AuthContext | undefined) => R,
  refuse: (error: unknown) => R,
): R | Promise<R> {
  let result: AuthContext | undefined | Promise<AuthContext | undefined>
  try {
    result = guard.check(request)
  } catch (error) {
    return refuse(error)
  }
  return isPromise(result) ? result.then(accept, refuse) : accept(result)
}

/**
 * Headers to add to the response of a request the guard accepted: a fresh `DPoP-Nonce` when
 * server nonces are on and the request used DPoP (RFC 9449 §8.2). `undefined` when none.
 */
export function responseHeaders(request: object): Record<string, string> | undefined {
  return decisionOf(request)?.headers
}

/**
 * The `requireAuth` decision for a request the guard has seen: the auth context if `rule` holds.
 * Throws a 401 `AuthError` if the request carried no credentials (optional mode), a 403 if the
 * rule fails, and a plain `Error` (a server bug, not bad input) if no guard authenticated it.
 */
export function authorizeRequest(request: object, rule: CompiledRule): AuthContext | undefined {
  const state = decisionOf(request)
  if (!state) {
    throw new Error('Callsign: requireAuth() ran on a request the callsign middleware did not authenticate; register callsign(options) before the route')
  }
  return state.recorder.authorize(request as AuthRequest, state, rule)
}

/** What a rule's `onBehalfOf` promises a typed handler, as bits: every rule promises a context. */
const PROMISES: Readonly<Record<OnBehalfOfMode, number>> = { optional: 1, required: 3, forbidden: 5 }
/** The rules that refuse what a typed handler cannot run without, even in dry run. */
const ENFORCED: Readonly<Record<OnBehalfOfMode, CompiledRule>> = {
  optional: compileRule({ enforce: true }),
  required: compileRule({ onBehalfOf: 'required', enforce: true }),
  forbidden: compileRule({ onBehalfOf: 'forbidden', enforce: true }),
}

/**
 * {@link authorizeRequest} for a route whose handler relies on what `rule` promises (a typed
 * handler, `getAuth`): also records the rule's `onBehalfOf` promise on the request, for
 * {@link promisedAuth}.
 */
export function authorizeRoute(request: object, rule: CompiledRule): AuthContext | undefined {
  const auth = authorizeRequest(request, rule)
  decisionOf(request)!.promises |= PROMISES[rule.onBehalfOf]
  return auth
}

/** How an adapter names its `getAuth` in setup errors. */
export interface PromisedAuthUsage {
  /** The call as the adapter spells it, e.g. `getAuth(req, rule)`. */
  call: string
  /** Where `requireAuth` belongs in that framework, e.g. `put it before the handler`. */
  hint: string
}

/**
 * The auth context of a request that a rule promising `onBehalfOf` authorized
 * ({@link authorizeRoute}), when the context keeps that promise (a user for `'required'`, none for
 * `'forbidden'`). No such rule is a setup bug: a plain `Error`, never `undefined`. A broken
 * promise happens only in dry run, and throws the refusal an enforcing rule gives (an `AuthError`).
 * What every adapter's `getAuth` and typed handlers rely on.
 */
export function promisedAuth(request: object, onBehalfOf: OnBehalfOfMode, usage: PromisedAuthUsage): AuthContext {
  const wanted = PROMISES[onBehalfOf]
  if (wanted === undefined) {
    throw new TypeError(`Callsign: ${usage.call}: "rule.onBehalfOf" must be 'required', 'forbidden' or 'optional' (got ${JSON.stringify(onBehalfOf)})`)
  }
  const state = decisionOf(request)
  if (((state?.promises ?? 0) & wanted) !== wanted) {
    const rule = onBehalfOf === 'optional' ? 'requireAuth(rule)' : `requireAuth({ onBehalfOf: '${onBehalfOf}' })`
    throw new Error(`Callsign: getAuth() ran on a request no ${rule} authorized; ${usage.hint}`)
  }
  const auth = state!.auth
  if (auth && (onBehalfOf === 'optional' || (onBehalfOf === 'required') === (auth.user !== undefined))) return auth
  authorizeRequest(request, ENFORCED[onBehalfOf])
  throw new Error('Callsign: getAuth() found no auth context the rule promised')
}

/** Fill in a refusal: code, reason, the failing check, and in dry run the explanation. */
function describeRefusal(event: DecisionEvent, error: AuthError): void {
  const check = error.check
  Object.assign(event, { outcome: 'refused', status: error.status, code: error.code, reason: error.message, check })
  if (!event.enforced) event.explanation = [{ check, ok: false, detail: refusalDetail(error) }]
}

function flush(state: RequestState): void {
  const event = state.pending
  if (!event) return
  state.pending = undefined
  state.recorder.report(event)
}

function onClose(request: AuthRequest, callback: () => void): void {
  const emitter = request as unknown as { once?: (event: string, listener: () => void) => void }
  if (typeof emitter.once === 'function') emitter.once('close', callback)
  else queueMicrotask(callback)
}

import { checkAccessToken, VerifiedTokenCache, type VerifiedToken } from './access-token.js'
import { checkBinding } from './binding.js'
import { readCredentials, type Credentials } from './credentials.js'
import { checkCallerConsistency, checkDelegation } from './delegation.js'
import { AuthError } from './errors.js'
import { describeAuth, emit, expiresSoon, type DecisionEvent } from './decision-events.js'
import { stepOf } from './explain-step.js'
import { applyChallenge, type ChallengeContext } from './http-mapping.js'
import { IssuerKeys } from './jwks.js'
import { Introspector } from './introspection.js'
import { resolveConfig, type CallsignOptions, type ResolvedConfig } from './options.js'
import { addressTrusted, ForwardedPeers } from './forwarded-certificate.js'
import { readPeerCertificate, spiffeIdHost, type PeerCertificate } from './peer-certificate.js'
import { loadTelemetry, type Telemetry } from './telemetry.js'
import { MemoryReplayStore } from './replay-store.js'
import { checkRevocation, revokeToken, type RevocableToken } from './revocation.js'
import { authorize, compileRule, findAllowance, type AuthRule, type CompiledRule } from './policy.js'
import { certificateAuthContext, toAuthContext, type AuthContext, type TokenBinding } from './principal.js'
import { headerValues, requestPath, type AuthRequest } from './request.js'

/** A configured guard: what every adapter wraps. */
export interface Callsign {
  /** The frozen, validated configuration. */
  readonly config: ResolvedConfig
  /**
   * Authenticate a request: peer certificate, credentials, token, binding, caller and user.
   * Resolves to the auth context, or `undefined` when credentials are optional and absent.
   * Rejects with an `AuthError` whose `headers` already carry the challenge.
   */
  authenticate(request: AuthRequest): Promise<AuthContext | undefined>
  /**
   * {@link authenticate} without a promise when none is needed: returns the auth context (or
   * `undefined`) or throws the `AuthError` when the decision needs no I/O (a cached or locally
   * verifiable token, a refusal); returns a promise otherwise. For adapters on hot paths.
   */
  check(request: AuthRequest): AuthContext | undefined | Promise<AuthContext | undefined>
  /** Authorize an auth context against a rule; throws a 403 `AuthError` naming the failing side. */
  authorize(auth: AuthContext, rule: AuthRule | CompiledRule): void
  /** Resolves once every issuer's keys are cached (fetching them if needed): for readiness probes. */
  ready(): Promise<void>
  /**
   * The RFC 9728 metadata document when `resourceMetadata` is configured and the request is a GET
   * or HEAD of its well-known path; `undefined` otherwise (then authenticate as usual).
   */
  metadataResponse(request: AuthRequest): { status: number; headers: Record<string, string>; body: string } | undefined
  /**
   * Revoke a token before it expires (needs the `revocation` option): its `iss` + `jti` go to the
   * denylist until its `exp`. Pass the token's claims, e.g. `auth.claims`.
   */
  revoke(token: RevocableToken): Promise<void>
}

/** What `authenticate` learned before it finished or failed. */
interface Seen {
  /** The scheme of the credentials read. */
  scheme?: Credentials['scheme']
  /** The credentials were being read (the peer checks had passed). */
  reading?: boolean
}

interface RequestState {
  guard: Callsign
  auth: AuthContext | undefined
  /** The scheme the request used, for the challenge of a refusal by a rule. */
  scheme: Credentials['scheme'] | undefined
  challengeFor: (scheme: Credentials['scheme'] | undefined) => ChallengeContext
  /** Headers for the response of an accepted request (`DPoP-Nonce`). */
  headers: Record<string, string> | undefined
  /** The guard refused the request but does not enforce (dry run). */
  refused: AuthError | undefined
  /** The authenticate-stage event, emitted by `requireAuth` (merged) or when the request closes. */
  pending: DecisionEvent | undefined
  report: (event: DecisionEvent) => void
  /** Decision events are wanted (an onDecision hook or OpenTelemetry). */
  observed: boolean
}
// What the guard decided about each request, so `requireAuth` (possibly in another adapter
// layer) finds both the result and the guard's policy. A module-private symbol: no other code can
// name it, and unlike a WeakMap entry it costs no ephemeron work in every scavenge (measured on
// the reused-token path, see bench/README.md).
const DECISION = Symbol('callsign.decision')
type Decided = { [DECISION]?: RequestState }
const decisionOf = (request: object): RequestState | undefined => (request as Decided)[DECISION]
// `decide`'s error argument when nothing was thrown (anything thrown counts, even `undefined`).
const SUCCEEDED = Symbol('callsign.succeeded')

/**
 * Create a guard. Options are validated now (a bad option throws `TypeError` naming it);
 * no network I/O happens unless `prefetch: true`.
 *
 * @example
 * const guard = createCallsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
 * const auth = await guard.authenticate(req) // IncomingMessage works as is
 */
export function createCallsign(options: CallsignOptions): Callsign {
  const config = resolveConfig(withClockedStores(options))
  const keys = new IssuerKeys(config)
  const tokenCache = config.tokenCacheMaxEntries > 0 ? new VerifiedTokenCache(config.tokenCacheMaxEntries) : undefined
  const introspector = Introspector.wanted(config) ? new Introspector(config, keys) : undefined
  const { mtls, realm, dpop } = config
  const dpopAlgs = dpop.mode === 'off' ? undefined : dpop.algs
  const bearer = dpop.mode !== 'required'
  // The server nonce (an HMAC) is computed only for the refusal that hands it out.
  const challengeFor = (scheme: Credentials['scheme'] | undefined, error?: AuthError): ChallengeContext => ({
    realm,
    dpopAlgs,
    bearer,
    scheme,
    dpopNonce: error?.code === 'use_dpop_nonce' ? dpop.nonces?.current() : undefined,
    resourceMetadata: config.resourceMetadata?.url,
  })

  const { trustBundles } = mtls
  trustBundles?.watch()
  const forwardedPeers = mtls.forwarded ? new ForwardedPeers(mtls.forwarded, trustBundles) : undefined

  /**
   * The client certificate identity of a request: the socket's authorized certificate, or, when
   * the immediate peer is a trusted proxy (by its certificate's SPIFFE ID or its address), the
   * certificate it forwarded (none if it forwarded none). Anyone else's header is ignored.
   */
  function resolvePeer(request: AuthRequest): PeerCertificate | undefined {
    const state = readPeerCertificate(request.socket)
    if (state.kind === 'rejected') throw new AuthError('peer_unauthorized', state.reason, { cause: state.cause })
    const socketPeer = state.kind === 'authorized' ? state.peer : undefined
    // Federation: the socket's SPIFFE ID (a caller's or a proxy's) is proven only by its own domain's bundle.
    if (trustBundles && state.kind === 'authorized' && state.peer.spiffeId !== undefined) {
      trustBundles.checkConnection(request.socket!, state.peer.spiffeId, state.chain ?? [], config.now())
    }
    const forwarded = mtls.forwarded
    if (!forwarded || !forwardedPeers) return socketPeer
    const proxySpiffeId = socketPeer?.spiffeId
    const fromProxy =
      (proxySpiffeId !== undefined && forwarded.proxySpiffeIds?.some((pattern) => pattern.matches(proxySpiffeId)) === true) ||
      addressTrusted(forwarded.proxyAddresses, (request.socket as { remoteAddress?: string } | null | undefined)?.remoteAddress)
    if (!fromProxy) return socketPeer
    return forwardedPeers.read(headerValues(request, forwarded.header), config.now())
  }

  /** Value when nothing needs I/O; a promise only for key fetches, introspection, revocation or DPoP. */
  function authenticate(request: AuthRequest, seen: Seen): AuthContext | undefined | Promise<AuthContext | undefined> {
    const peer = resolvePeer(request)
    if (!peer && mtls.mode === 'required') throw new AuthError('mtls_required', 'a trusted client certificate is required')
    if (peer && mtls.trustDomains) {
      const domain = peer.spiffeId === undefined ? undefined : spiffeIdHost(peer.spiffeId)
      if (domain === undefined || !mtls.trustDomains.has(domain)) {
        throw new AuthError('peer_unauthorized', 'client certificate is not from an accepted trust domain')
      }
    }
    // A malformed DPoP request gets its error in the DPoP challenge (see `schemeSent`).
    seen.reading = true
    const credentials = readCredentials(request, dpop.mode !== 'off', knownToken)
    if (!credentials) {
      // mTLS-only call: the certificate's SPIFFE ID, with what `certificateGrants` gives it.
      const spiffeId = peer?.spiffeId
      if (spiffeId !== undefined && config.certificateGrants) {
        const grant = findAllowance(spiffeId, config.certificateGrants)
        if (grant) return certificateAuthContext(peer as PeerCertificate & { spiffeId: string }, grant.scopes)
      }
      if (config.credentials === 'optional') return undefined
      throw new AuthError('credentials_missing', 'an access token is required')
    }
    seen.scheme = credentials.scheme
    if (credentials.scheme === 'bearer' && !bearer) throw new AuthError('invalid_token', 'a DPoP-bound token is required')
    // RFC 7662: opaque tokens (and, with `tokens: 'all'`, that issuer's JWTs) are introspected.
    const introspecting = introspector?.issuerFor(credentials.token)
    if (introspecting) return introspector!.introspect(credentials.token, introspecting).then((token) => accept(token, credentials, peer, request))
    const token = checkAccessToken(credentials.token, config, keys, tokenCache, credentials.compact)
    return isPromise(token) ? token.then((verified) => accept(verified, credentials, peer, request)) : accept(token, credentials, peer, request)
  }
  // A token in the cache passed every syntax check when it was verified.
  const knownToken = tokenCache ? (token: string): boolean => tokenCache.has(token) : undefined

  /** The checks after a verified token: revocation, possession (certificate or DPoP key), then who presents it and through whom. */
  function accept(token: VerifiedToken, credentials: Credentials, peer: PeerCertificate | undefined, request: AuthRequest): AuthContext | Promise<AuthContext> {
    if (config.revocation) return checkRevocation(token, config).then(() => bind(token, credentials, peer, request))
    return bind(token, credentials, peer, request)
  }
  function bind(token: VerifiedToken, credentials: Credentials, peer: PeerCertificate | undefined, request: AuthRequest): AuthContext | Promise<AuthContext> {
    const bound = checkBinding(token, credentials, peer, request, config)
    return typeof bound === 'string' ? identify(token, peer, bound) : bound.then((binding) => identify(token, peer, binding))
  }
  function identify(token: VerifiedToken, peer: PeerCertificate | undefined, binding: TokenBinding): AuthContext {
    checkCallerConsistency(token, peer, config)
    checkDelegation(token, peer, config)
    return toAuthContext(token, peer, binding)
  }

  // OpenTelemetry, when the application has it (loaded in the background; until then, no spans or counters).
  let telemetry: Telemetry | undefined
  if (config.telemetry) void loadTelemetry().then((loaded) => {
    telemetry = loaded
    if (loaded) keys.onKeyEvent = (outcome, issuer) => loaded.keys(outcome, issuer)
  })
  const report = (event: DecisionEvent): void => {
    telemetry?.annotate(event)
    telemetry?.decision(event)
    emit(config.onDecision, event, config.logger.warn.bind(config.logger))
  }
  // Logged once per certificate (bounded), whether or not anyone listens to decision events.
  const peerWarned = new Set<string>()
  const checkPeerExpiry = (auth: AuthContext | undefined): void => {
    const peer = auth?.peer
    if (!peer || !expiresSoon(peer, config.peerExpiryWarningDays, config.now())) return
    const key = peer.x5tS256
    if (peerWarned.has(key) || peerWarned.size >= 1000) return
    peerWarned.add(key)
    config.logger.warn('callsign: a peer certificate expires soon', { caller: auth!.caller.id, validTo: peer.validTo?.toISOString() })
  }

  /**
   * The scheme for a refusal's challenge: the one read, else, when the refusal came from reading
   * the credentials, `dpop` if the Authorization header names it. Looked up only on this error path:
   * reading `request.headers` makes Node build the whole header object.
   */
  const schemeSent = (request: AuthRequest, seen: Seen): Credentials['scheme'] | undefined => {
    if (seen.scheme !== undefined || !seen.reading || dpopAlgs === undefined) return seen.scheme
    const authorization = headerValues(request, 'authorization')[0]
    return authorization !== undefined && /^\s*dpop(?:\s|$)/i.test(authorization) ? 'dpop' : undefined
  }

  /** Record the outcome on the request (for `requireAuth`), report it, and return or throw it. */
  function decide(request: AuthRequest, scheme: Credentials['scheme'] | undefined, observing: boolean, started: number, auth: AuthContext | undefined, error: unknown): AuthContext | undefined {
    let refused: AuthError | undefined
    if (error !== SUCCEEDED) {
      // Not a refusal: a server error, always an Error (frameworks treat a falsy one as success).
      if (!(error instanceof AuthError)) throw error instanceof Error ? error : new Error(`Callsign: authentication failed: ${String(error)}`, { cause: error })
      if (!(error.code === 'credentials_missing' && config.credentials === 'optional')) refused = applyChallenge(error, challengeFor(scheme, error))
    }
    const state: RequestState = { guard, auth, scheme, challengeFor, headers: undefined, refused: undefined, pending: undefined, report, observed: observing }
    if (observing) {
      const event = baseEvent(request, 'authenticate', started, scheme, config.enforce, config.now())
      if (refused) {
        describeRefusal(event, refused)
        report(event)
      } else {
        Object.assign(event, describeAuth(auth, config.peerExpiryWarningDays, config.now()), { outcome: auth ? 'allowed' : 'anonymous' })
        state.pending = event
        telemetry?.annotate(event) // now, while the request's span is still open
        // Emitted when the request ends unless a rule checks it (one event per request).
        onClose(request, () => flush(state))
      }
    }
    if (auth?.peer) checkPeerExpiry(auth)
    if (refused) {
      if (config.enforce) throw refused
      state.refused = refused
      ;(request as Decided)[DECISION] = state
      return undefined
    }
    if (scheme === 'dpop') {
      const nonce = dpop.nonces?.current()
      if (nonce) state.headers = { 'dpop-nonce': nonce }
    }
    ;(request as Decided)[DECISION] = state
    return auth
  }

  const guard: Callsign = {
    config,
    async authenticate(request) {
      return guard.check(request)
    },
    check(request) {
      const seen: Seen = {}
      // No event is built when nothing would receive it (no hook; OpenTelemetry absent or without an SDK).
      const observing = config.onDecision !== undefined || telemetry?.active() === true
      const started = observing ? performance.now() : 0
      let result: AuthContext | undefined | Promise<AuthContext | undefined>
      try {
        result = authenticate(request, seen)
      } catch (error) {
        return decide(request, schemeSent(request, seen), observing, started, undefined, error)
      }
      if (!isPromise(result)) return decide(request, seen.scheme, observing, started, result, SUCCEEDED)
      return result.then(
        (auth) => decide(request, seen.scheme, observing, started, auth, SUCCEEDED),
        (error: unknown) => decide(request, schemeSent(request, seen), observing, started, undefined, error),
      )
    },
    authorize(auth, rule) {
      try {
        authorize(auth, compileRule(rule), config.callers)
      } catch (error) {
        if (error instanceof AuthError) applyChallenge(error, challengeFor(auth.binding === 'dpop' ? 'dpop' : 'bearer'))
        throw error
      }
    },
    revoke(token) {
      return revokeToken(token, config)
    },
    metadataResponse(request) {
      const metadata = config.resourceMetadata
      if (!metadata || (request.method !== 'GET' && request.method !== 'HEAD')) return undefined
      if (requestPath(request) !== metadata.path) return undefined
      return {
        status: 200,
        headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' },
        body: request.method === 'HEAD' ? '' : metadata.body,
      }
    },
    async ready() {
      // Issuers whose tokens are all introspected (`tokens: 'all'`) need no keys.
      const needKeys = [...config.issuers.values()].filter((issuer) => issuer.introspection?.tokens !== 'all' && !keys.hasKeys(issuer.issuer))
      await Promise.all(needKeys.map((issuer) => keys.refresh(issuer)))
    },
  }
  if (config.prefetch) guard.ready().catch(() => {}) // failures are logged; requests retry
  return guard
}

/**
 * Run `accept` with the guard's decision for `request`, or `refuse` with what it threw: at once
 * when {@link Callsign.check} decided without a promise, otherwise once it settles. What every
 * adapter's middleware does with a request.
 */
export function afterCheck<R>(guard: Callsign, request: AuthRequest, accept: (auth: AuthContext | undefined) => R, refuse: (error: unknown) => R): R | Promise<R> {
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
  const { config } = state.guard
  const enforce = rule.enforce ?? config.enforce
  const started = state.observed ? performance.now() : 0
  let refusal: AuthError | undefined
  if (state.refused) refusal = state.refused
  else if (!state.auth) refusal = applyChallenge(new AuthError('credentials_missing', 'an access token is required'), state.challengeFor(state.scheme))
  else {
    try {
      authorize(state.auth, rule, config.callers)
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      refusal = applyChallenge(error, state.challengeFor(state.scheme))
    }
  }
  // A guard refusal in dry run was reported already (unless this rule enforces it); otherwise one event for this rule's decision,
  if (state.observed && (!state.refused || enforce !== config.enforce)) {
    // merged with the authenticate step's event when it is still pending (one event per request).
    const pending = state.pending ?? { ...baseEvent(request as AuthRequest, 'authorize', started, state.scheme, enforce, config.now()), ...describeAuth(state.auth, config.peerExpiryWarningDays, config.now()) }
    state.pending = undefined
    const event: DecisionEvent = { ...pending, stage: 'authorize', enforced: enforce, durationMs: pending.durationMs + (performance.now() - started) }
    if (refusal) describeRefusal(event, refusal)
    else event.outcome = 'allowed'
    state.report(event)
  }
  if (refusal && enforce) throw refusal
  return state.auth
}

/** Fill in a refusal: code, reason, the failing check, and in dry run the explanation. */
function describeRefusal(event: DecisionEvent, error: AuthError): void {
  const check = stepOf(error)
  Object.assign(event, { outcome: 'refused', status: error.status, code: error.code, reason: error.message, check })
  if (!event.enforced) event.explanation = [{ check, ok: false, detail: `${error.code}: ${error.message}${error.side ? ` (${error.side} side)` : ''}` }]
}

function baseEvent(request: AuthRequest, stage: DecisionEvent['stage'], started: number, scheme: Credentials['scheme'] | undefined, enforced: boolean, now: number): DecisionEvent {
  const event: DecisionEvent = {
    outcome: 'allowed',
    stage,
    enforced,
    status: 200,
    path: requestPath(request),
    durationMs: performance.now() - started,
    time: new Date(now).toISOString(),
  }
  if (request.method !== undefined) event.method = request.method
  if (scheme !== undefined) event.scheme = scheme
  return event
}

/**
 * `options` with the guard's clock (`now`) in the default in-memory stores, which the resolver
 * builds on the wall clock: a proof's `jti` or a revoked token must expire on the clock that
 * judges the proof and the token. Stores the application passes are left as they are, and so is
 * anything but an object literal (the resolver then says what is wrong with it).
 */
function withClockedStores(options: CallsignOptions): CallsignOptions {
  const now = isLiteral(options) ? options.now : undefined
  if (typeof now !== 'function') return options
  const { dpop, revocation } = options
  const clocked = { ...options }
  if (dpop === undefined || (isLiteral(dpop) && dpop.replayStore === undefined)) clocked.dpop = { ...dpop, replayStore: new MemoryReplayStore({ now }) }
  if (isLiteral(revocation) && revocation.store === undefined) clocked.revocation = { ...revocation, store: new MemoryReplayStore({ now }) }
  return clocked
}
// Only an object literal is copied: spreading anything else could lose what it inherits.
const isLiteral = <T>(value: T): value is T & object => typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype

function flush(state: RequestState): void {
  const event = state.pending
  if (!event) return
  state.pending = undefined
  state.report(event)
}

function onClose(request: AuthRequest, callback: () => void): void {
  const emitter = request as unknown as { once?: (event: string, listener: () => void) => void }
  if (typeof emitter.once === 'function') emitter.once('close', callback)
  else queueMicrotask(callback)
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

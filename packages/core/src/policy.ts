import { AuthError } from './errors.js'
import { fail, isPlainObject, optionalBoolean, optionKeys, scopeList } from './internal/validate.js'
import type { AuthContext } from './principal.js'
import { compileCallerPattern, type CallerPattern } from './spiffe.js'

/** `'required'`: only sender-constrained tokens (DPoP- or certificate-bound); `'optional'`: bearer tokens too. */
export type SenderConstraintMode = 'required' | 'optional'

/** `'required'`: a user must be present; `'forbidden'`: service-only calls; `'optional'`: either. */
export type OnBehalfOfMode = 'required' | 'forbidden' | 'optional'

/**
 * What a route requires. All given conditions must hold.
 *
 * @example requireAuth({ scopes: ['orders:read'], callers: ['spiffe://example.org/ns/web/*'], onBehalfOf: 'required' })
 */
export interface AuthRule {
  /** Every one of these scopes is required (in the token, and within the caller's allowance). */
  scopes?: string[]
  /** At least one of these scopes is required. */
  anyScopes?: string[]
  /** Caller patterns allowed on this route (exact SPIFFE ID, SPIFFE prefix ending in `/*`, or client id). */
  callers?: string[]
  /** `required`: a user must be present; `forbidden`: service-only calls; `optional` (default). */
  onBehalfOf?: OnBehalfOfMode
  /**
   * `required`: this route refuses plain bearer tokens (401 `invalid_token`) even when the guard's
   * `senderConstraint` is `'optional'`. A rule can only tighten the guard: with the guard at
   * `'required'`, bearer tokens never get this far.
   */
  senderConstraint?: SenderConstraintMode
  /** `false`: dry run for this route: the decision is reported to `onDecision` and the request passes. Default: the guard's `enforce`. */
  enforce?: boolean
}

const COMPILED = Symbol('callsign.compiledRule')

/** A validated, frozen rule. Create it once (at route definition), use it per request. */
export interface CompiledRule {
  readonly [COMPILED]: true
  readonly scopes: readonly string[]
  readonly anyScopes: readonly string[] | undefined
  readonly callers: readonly CallerPattern[] | undefined
  readonly onBehalfOf: OnBehalfOfMode
  readonly senderConstraint: SenderConstraintMode
  readonly enforce: boolean | undefined
}

const RULE_KEYS: readonly string[] = optionKeys<AuthRule>()(['scopes', 'anyScopes', 'callers', 'onBehalfOf', 'senderConstraint', 'enforce'])

/** Validate a rule; throws `TypeError` naming the field. Idempotent on compiled rules. */
export function compileRule(rule: AuthRule | CompiledRule = {}): CompiledRule {
  if (!isPlainObject(rule as unknown)) throw new TypeError('Callsign: requireAuth(rule): "rule" must be an object')
  if ((rule as CompiledRule)[COMPILED]) return rule as CompiledRule
  const input = rule as AuthRule
  for (const key of Object.keys(input)) {
    if (!RULE_KEYS.includes(key)) throw new TypeError(`Callsign: requireAuth(rule): "rule.${key}" is not a known field (known: ${RULE_KEYS.join(', ')})`)
  }
  const scopes = input.scopes === undefined ? [] : scopeList(input.scopes, 'rule.scopes')
  let anyScopes: string[] | undefined
  if (input.anyScopes !== undefined) {
    anyScopes = scopeList(input.anyScopes, 'rule.anyScopes')
    if (anyScopes.length === 0) fail('rule.anyScopes', 'must not be empty (omit it instead)')
  }
  let callers: CallerPattern[] | undefined
  if (input.callers !== undefined) {
    if (!Array.isArray(input.callers) || input.callers.length === 0) fail('rule.callers', 'must be a non-empty array of caller patterns')
    callers = input.callers.map((pattern, i) => compileCallerPattern(pattern, `rule.callers[${i}]`))
  }
  const onBehalfOf = input.onBehalfOf ?? 'optional'
  if (!['required', 'forbidden', 'optional'].includes(onBehalfOf)) {
    fail('rule.onBehalfOf', `must be 'required', 'forbidden' or 'optional' (got ${JSON.stringify(onBehalfOf)})`)
  }
  const senderConstraint = input.senderConstraint ?? 'optional'
  if (!['required', 'optional'].includes(senderConstraint)) {
    fail('rule.senderConstraint', `must be 'required' or 'optional' (got ${JSON.stringify(senderConstraint)})`)
  }
  optionalBoolean(input.enforce, 'rule.enforce', ' (false: dry run)')
  return Object.freeze({
    [COMPILED]: true as const,
    enforce: input.enforce,
    senderConstraint,
    scopes: Object.freeze([...scopes]),
    anyScopes: anyScopes && Object.freeze([...anyScopes]),
    callers: callers && Object.freeze(callers),
    onBehalfOf,
  })
}

/** One entry of a caller allowance map (`callers`, `certificateGrants`), compiled. */
export interface ResolvedAllowance {
  pattern: CallerPattern
  /** 0 for exact, else prefix length: the most specific match wins. */
  specificity: number
  scopes: ReadonlySet<string>
}

/** The service allowances of the guard: scope ceilings per caller, and scopes held on a certificate alone. */
export interface AllowanceConfig {
  callers: readonly ResolvedAllowance[] | undefined
  /** Scopes held on the client certificate alone, most specific pattern first. */
  certificateGrants: readonly ResolvedAllowance[] | undefined
}

/** `callers` and `certificateGrants`, each sorted most specific pattern first. */
export function resolveAllowanceConfig(options: { callers?: unknown; certificateGrants?: unknown }): AllowanceConfig {
  const callers = options.callers === undefined ? undefined : resolveAllowances(options.callers, 'callers')
  const certificateGrants =
    options.certificateGrants === undefined ? undefined : resolveAllowances(options.certificateGrants, 'certificateGrants', { spiffeOnly: true })
  return { callers: callers && Object.freeze(callers), certificateGrants: certificateGrants && Object.freeze(certificateGrants) }
}

/** Caller pattern -> scopes, most specific pattern first (exact, then longest prefix). */
function resolveAllowances(value: unknown, option: string, { spiffeOnly = false } = {}): ResolvedAllowance[] {
  if (!isPlainObject(value)) fail(option, 'must be an object mapping caller patterns to scope arrays')
  const allowances = Object.entries(value as Record<string, unknown>).map(([pattern, scopes]) => {
    const name = `${option}[${JSON.stringify(pattern)}]`
    // A certificate names a service by its SPIFFE ID only: a client id pattern would never match.
    if (spiffeOnly && !pattern.startsWith('spiffe://'))
      fail(name, 'must be a SPIFFE ID or a SPIFFE prefix ending in "/*" (certificates are matched by their SPIFFE ID)')
    return {
      pattern: compileCallerPattern(pattern, name),
      specificity: pattern.endsWith('/*') ? pattern.length : Number.MAX_SAFE_INTEGER,
      scopes: new Set(scopeList(scopes, name)),
    }
  })
  return allowances.sort((a, b) => b.specificity - a.specificity)
}

/** The allowance entry that applies to a caller: the most specific matching pattern, `null` if none, `undefined` if no `callers` map is configured. */
export function findAllowance(callerId: string, allowances: readonly ResolvedAllowance[] | undefined): ResolvedAllowance | null | undefined {
  if (!allowances) return undefined
  for (const allowance of allowances) if (allowance.pattern.matches(callerId)) return allowance
  return null
}

/**
 * Two-sided authorization. Passes only if, in this order (after `rule.senderConstraint`, 401):
 * 1. the caller matches `rule.callers` (when given) and the `callers` allowance map (when configured);
 * 2. every `rule.scopes` (and one of `rule.anyScopes`) is in the token's scopes — for an
 *    on-behalf-of token, the user's delegated scopes;
 * 3. those scopes are within the caller's allowance: a user's broad grant never lets a narrowly
 *    allowed service do more;
 * 4. `onBehalfOf` holds.
 * Throws `AuthError` (403) naming the side that failed.
 */
export function authorize(auth: AuthContext, rule: CompiledRule, allowances: readonly ResolvedAllowance[] | undefined): void {
  if (rule.senderConstraint === 'required' && auth.binding === 'bearer') {
    throw new AuthError('invalid_token', 'this route requires a sender-constrained token', { check: 'rule' })
  }
  const allowance = allowedCaller(auth.caller.id, rule, allowances)
  checkRuleScopes(auth, rule)
  if (allowance) checkWithinAllowance(auth.scopes, rule, allowance)
  if (rule.onBehalfOf === 'required' && !auth.user) {
    throw new AuthError('on_behalf_of_required', 'this route requires a call on behalf of a user', { side: 'user', check: 'rule' })
  }
  if (rule.onBehalfOf === 'forbidden' && auth.user) {
    throw new AuthError('on_behalf_of_forbidden', 'this route does not accept calls on behalf of a user', { side: 'caller', check: 'rule' })
  }
}

/** The caller's allowance (`undefined`: no `callers` option); refuses a caller the rule or the allowances do not admit. */
function allowedCaller(callerId: string, rule: CompiledRule, allowances: readonly ResolvedAllowance[] | undefined): ResolvedAllowance | undefined {
  if (rule.callers && !rule.callers.some((pattern) => pattern.matches(callerId))) {
    throw new AuthError('caller_forbidden', 'the calling service is not allowed on this route', { side: 'caller', check: 'rule' })
  }
  const allowance = findAllowance(callerId, allowances)
  if (allowance === null) {
    throw new AuthError('caller_forbidden', 'the calling service is not an allowed caller', { side: 'caller', check: 'rule' })
  }
  return allowance
}

/** Every `rule.scopes` and one of `rule.anyScopes` granted, with a reason naming who lacks them. */
function checkRuleScopes(auth: AuthContext, rule: CompiledRule): void {
  const side = auth.user ? 'user' : 'caller'
  const granted = auth.scopes
  const missing = !rule.scopes.every((scope) => granted.includes(scope))
  const certificateOnly = auth.credential === 'certificate'
  if (missing) {
    const reason = auth.user
      ? 'the user has not granted a required scope'
      : certificateOnly
        ? 'the calling service is not granted a required scope (certificateGrants)'
        : 'the token lacks a required scope'
    throw new AuthError('insufficient_scope', reason, {
      side,
      scope: [...new Set(rule.scopes.concat(rule.anyScopes ?? []))],
      check: 'rule',
    })
  }
  if (rule.anyScopes && !rule.anyScopes.some((scope) => granted.includes(scope))) {
    const reason = auth.user
      ? 'the user has not granted any of the accepted scopes'
      : certificateOnly
        ? 'the calling service is granted none of the accepted scopes (certificateGrants)'
        : 'the token has none of the accepted scopes'
    throw new AuthError('insufficient_scope', reason, {
      side,
      scope: rule.anyScopes,
      check: 'rule',
    })
  }
}

/** The rule's scopes within the caller's allowance: a user's broad grant never lets a narrowly allowed service do more. */
function checkWithinAllowance(granted: readonly string[], rule: CompiledRule, allowance: ResolvedAllowance): void {
  const beyond = rule.scopes.some((scope) => !allowance.scopes.has(scope))
  const anyAllowed = !rule.anyScopes || rule.anyScopes.some((scope) => granted.includes(scope) && allowance.scopes.has(scope))
  if (beyond || !anyAllowed) {
    throw new AuthError('caller_scope_exceeded', "a required scope is beyond the calling service's allowance", {
      side: 'caller',
      scope: [...new Set(rule.scopes.concat(rule.anyScopes ?? []))],
      check: 'rule',
    })
  }
}

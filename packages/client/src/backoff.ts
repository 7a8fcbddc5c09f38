/**
 * Backoff after a failed authorization-server request: the delay doubles from `initialMs` to
 * `maxMs`, each one scattered by ±`jitter` so that many clients (or many cache keys) that failed
 * together do not come back together.
 */

/** How long to wait after the `failures`-th consecutive failure. */
export interface BackoffPolicy {
  /** First delay (ms). Default 1000. */
  readonly initialMs: number
  /** Longest delay (ms). Default 60000. */
  readonly maxMs: number
  /** Relative spread, e.g. 0.2 for ±20%. Default 0.2. */
  readonly jitter: number
  /** A number in [0, 1): `Math.random` unless a test fixes it. */
  readonly random: () => number
}

/** The default policy: 1 s doubling to 60 s, ±20%. */
export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 1000, maxMs: 60_000, jitter: 0.2, random: Math.random })

/** The delay (ms) after `failures` (≥ 1) consecutive failures. */
export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  const base = Math.min(policy.initialMs * 2 ** Math.max(0, failures - 1), policy.maxMs)
  return Math.round(base * (1 + policy.jitter * (2 * policy.random() - 1)))
}

/** The last failure of one cache key (or of discovery): what to answer at once until `until`. */
export interface FailureState {
  readonly error: unknown
  /** Consecutive failures so far. */
  readonly failures: number
  /** No new request before this time (ms since the epoch). */
  readonly until: number
}

/** The state after one more failure (`previous` being the state before, if any). */
export function recordFailure(policy: BackoffPolicy, previous: FailureState | undefined, error: unknown, now: number): FailureState {
  const failures = (previous?.failures ?? 0) + 1
  return { error, failures, until: now + backoffDelay(policy, failures) }
}

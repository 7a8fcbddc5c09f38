import type { DecisionHook } from './decision-events.js'
import { fail, oneOf, optionalBoolean, positive } from './internal/validate.js'
import type { SenderConstraintMode } from './policy.js'

/** `'required'` (default): a request without credentials is refused at once. `'optional'`: it passes with no `auth`, and `requireAuth` refuses it. */
export type CredentialsMode = 'required' | 'optional'

/** How the guard itself behaves: what it demands of every request, how it reports, what it caches. */
export interface GuardConfig {
  credentials: CredentialsMode
  senderConstraint: SenderConstraintMode
  realm: string
  onDecision: DecisionHook | undefined
  enforce: boolean
  peerExpiryWarningDays: number | undefined
  telemetry: boolean
  tokenCacheMaxEntries: number
  prefetch: boolean
}

const MODES = ['required', 'optional'] as const

/** The guard-wide options of {@link GuardConfig}, validated, with their defaults. */
export function resolveGuardOptions(options: Partial<Record<keyof GuardConfig, unknown>>): GuardConfig {
  const prefetch = optionalBoolean(options.prefetch, 'prefetch')
  const telemetry = optionalBoolean(options.telemetry, 'telemetry')
  const enforce = optionalBoolean(options.enforce, 'enforce', ' (false: dry run)')
  if (options.onDecision !== undefined && typeof options.onDecision !== 'function') fail('onDecision', 'must be a function (event) => void')
  const realm = options.realm ?? 'api'
  if (typeof realm !== 'string' || !/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}$/.test(realm)) {
    fail('realm', 'must be 1-100 printable ASCII characters without quotes or backslashes')
  }
  return {
    credentials: oneOf(options.credentials, 'credentials', MODES, 'required'),
    senderConstraint: oneOf(options.senderConstraint, 'senderConstraint', MODES, 'optional'),
    realm: realm as string,
    onDecision: options.onDecision as DecisionHook | undefined,
    enforce: enforce ?? true,
    peerExpiryWarningDays:
      options.peerExpiryWarningDays === undefined
        ? undefined
        : positive(options.peerExpiryWarningDays, 'peerExpiryWarningDays', 0, { allowZero: true, max: 3650 }),
    telemetry: telemetry ?? true,
    tokenCacheMaxEntries: positive(options.tokenCacheMaxEntries, 'tokenCacheMaxEntries', 10_000, { integer: true, allowZero: true, max: 1_000_000 }),
    prefetch: prefetch ?? false,
  }
}

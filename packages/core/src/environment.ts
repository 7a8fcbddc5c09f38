import { fail, positive } from './internal/validate.js'

/** Minimal logger; `console` fits. Only operational problems (issuer unreachable) are logged. */
export interface Logger {
  warn(message: string, details?: Record<string, unknown>): void
}

/** The outside world a guard is given (STYLE: inject it): network, clock and logger. */
export interface EnvironmentConfig {
  fetch: typeof globalThis.fetch
  /** Epoch milliseconds. */
  now: () => number
  /** How far another party's clock may be off, for every time check (tokens, proofs, answers). */
  clockToleranceSeconds: number
  logger: Logger
}

/** `fetch`, `now`, `clockTolerance` and `logger` of the options, validated, with their defaults. */
export function resolveEnvironment(options: { fetch?: unknown; now?: unknown; clockTolerance?: unknown; logger?: unknown }): EnvironmentConfig {
  if (options.fetch !== undefined && typeof options.fetch !== 'function') fail('fetch', 'must be a fetch-compatible function')
  if (options.now !== undefined && typeof options.now !== 'function') fail('now', 'must be a function returning epoch milliseconds')
  const logger = options.logger as Logger | undefined
  if (logger !== undefined && (typeof logger !== 'object' || logger === null || typeof logger.warn !== 'function')) {
    fail('logger', 'must have a warn(message, details) method')
  }
  const globalFetch = globalThis.fetch
  return {
    fetch: (options.fetch as typeof globalThis.fetch | undefined) ?? ((input: Parameters<typeof fetch>[0], init?: RequestInit) => globalFetch(input, init)),
    now: (options.now as (() => number) | undefined) ?? Date.now,
    clockToleranceSeconds: positive(options.clockTolerance, 'clockTolerance', 30, { allowZero: true, max: 300 }),
    logger: logger ?? console,
  }
}

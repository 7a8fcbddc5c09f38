/**
 * Named validity windows for test certificates.
 *
 * - `'valid'`: `notBefore` one hour ago, `notAfter` 24 hours from now.
 * - `'expired'`: ended one day ago (`notBefore` two days ago).
 * - `'not-yet-valid'`: starts in one day (`notAfter` two days from now).
 *
 * @example
 * ```ts
 * const validity: CertificateValidity = 'expired';
 * ```
 */
export type CertificateValidity = 'valid' | 'expired' | 'not-yet-valid'

const HOUR_MS = 60 * 60 * 1000
const DAY_MS = 24 * HOUR_MS

/**
 * Computes the `notBefore`/`notAfter` pair for a named validity window,
 * applying explicit overrides on top.
 *
 * @param validity - Named window; default `'valid'`.
 * @param overrides - Explicit dates that replace the computed ones.
 * @param now - Reference time; default `new Date()`.
 * @returns The validity window.
 * @example
 * ```ts
 * const { notBefore, notAfter } = validityWindow('expired');
 * ```
 * @internal
 */
export function validityWindow(
  validity: CertificateValidity = 'valid',
  overrides: { notBefore?: Date | undefined; notAfter?: Date | undefined } = {},
  now: Date = new Date(),
): { notBefore: Date; notAfter: Date } {
  const t = now.getTime()
  let window: { notBefore: Date; notAfter: Date }
  switch (validity) {
    case 'expired':
      window = { notBefore: new Date(t - 2 * DAY_MS), notAfter: new Date(t - DAY_MS) }
      break
    case 'not-yet-valid':
      window = { notBefore: new Date(t + DAY_MS), notAfter: new Date(t + 2 * DAY_MS) }
      break
    case 'valid':
      window = { notBefore: new Date(t - HOUR_MS), notAfter: new Date(t + DAY_MS) }
      break
    default:
      throw new TypeError(`Unknown certificate validity: ${String(validity)}`)
  }
  return {
    notBefore: overrides.notBefore ?? window.notBefore,
    notAfter: overrides.notAfter ?? window.notAfter,
  }
}

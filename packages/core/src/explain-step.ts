import type { AuthError } from './errors.js'

/** How `callsign explain` and a dry-run decision event describe a refusal on its failing check. */
export function refusalDetail(error: AuthError): string {
  return `${error.code}: ${error.message}${error.side ? ` (${error.side} side)` : ''}`
}

import { createPublicKey } from 'node:crypto'
import { fail, isFileOption, readFileOption, type FileOption } from './internal/validate.js'
import { scanPem } from './internal/pem.js'

/**
 * An issuer's `jwks` option: local keys instead of `jwksUri`/discovery. A JWK Set object, a
 * string holding a JWK Set (JSON) or PEM public keys / certificates, or `{ path }` of such a file.
 */
export type LocalKeysOption = { keys: unknown[] } | string | FileOption

/** Local keys as resolved at startup: the parsed document (inline) or the file to read and watch; `option` names it in startup errors. */
export interface LocalKeys {
  document: unknown
  path: string | undefined
  pollSeconds: number
  option: string
}

/** Parse a local key document: a JWK Set object, JSON text, or PEM public keys / certificates. Throws TypeError naming the option. */
export function parseLocalKeys(value: unknown, option: string): { keys: unknown[] } {
  if (typeof value === 'object' && value !== null && Array.isArray((value as { keys?: unknown }).keys)) return value as { keys: unknown[] }
  if (typeof value !== 'string') return fail(option, 'must be a JWK Set, JWK Set JSON, PEM public keys or { path }')
  const text = value.trim()
  if (text.startsWith('{')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return fail(option, 'is not valid JSON')
    }
    return parseLocalKeys(parsed, option)
  }
  // Public keys and certificates (the PEM scanner of every other file; other blocks are skipped).
  const blocks = scanPem(text)
    .filter((block) => block.label === 'PUBLIC KEY' || block.label === 'CERTIFICATE')
    .map((block) => block.text)
  if (blocks.length === 0) return fail(option, 'contains no JWK Set and no PEM public key or certificate')
  return {
    keys: blocks.map((block, i) => {
      try {
        return createPublicKey(block).export({ format: 'jwk' })
      } catch {
        return fail(option, `PEM block #${i + 1} is not a public key or certificate`)
      }
    }),
  }
}

/** The `jwks` option of an issuer (`option` names it); `hasUri`: the issuer also sets `jwksUri`, which is refused. */
export function resolveLocalKeys(value: unknown, option: string, hasUri: boolean): LocalKeys {
  if (hasUri) fail(option, 'cannot be combined with jwksUri: choose local keys or a JWKS URL')
  if (isFileOption(value)) {
    const { text, path, pollSeconds } = readFileOption(value, option)
    return { document: parseLocalKeys(text, `${option}.path`), path, pollSeconds, option: `${option}.path` }
  }
  return { document: parseLocalKeys(value, option), path: undefined, pollSeconds: 0, option }
}

import { fail, isPlainObject } from './validate.js'

/**
 * A PEM file on disk, read when the options are created and again on every reload. Relative paths
 * resolve against the working directory; symbolic links are followed (Kubernetes secret volumes).
 * @example
 * const cert: FileRef = { path: '/var/run/secrets/tls/tls.crt' }
 */
export interface FileRef {
  path: string
}

/**
 * PEM text (RFC 7468), as a string or a `Buffer` (UTF-8 / ASCII), or a {@link FileRef} to read it
 * from. DER, PKCS#12 and encrypted keys are not accepted.
 * @example
 * const ca: TlsMaterial = fs.readFileSync('ca.pem') // or { path: 'ca.pem' }, or a PEM string
 */
export type TlsMaterial = string | Buffer | FileRef

/** Where PEM material comes from: given inline, or a file read (and re-read) by path. */
export type Source = { kind: 'inline'; text: string } | { kind: 'file'; path: string }

// The shared option checks, also offered here to the TLS material users (server TLS, the client certificate).
export { fail, isPlainObject }

/** A `TlsMaterial` option checked and normalized; throws `TypeError` naming `field`. */
export function sourceOf(value: unknown, field: string): Source {
  if (typeof value === 'string') {
    if (value.trim() === '') fail(field, 'must not be empty')
    return { kind: 'inline', text: value }
  }
  if (Buffer.isBuffer(value)) {
    if (value.length === 0) fail(field, 'must not be empty')
    return { kind: 'inline', text: value.toString('utf8') }
  }
  if (isPlainObject(value)) {
    for (const name of Object.keys(value)) if (name !== 'path') fail(`${field}.${name}`, 'is not a known option (known: path)')
    if (typeof value.path !== 'string' || value.path === '') fail(`${field}.path`, 'must be a non-empty string')
    return { kind: 'file', path: value.path as string }
  }
  return fail(field, `must be PEM text (a string or Buffer) or { path } of a PEM file (got ${value === null ? 'null' : typeof value})`)
}

/** The paths of the file sources, each once, in order. */
export const pathsOf = (sources: Iterable<Source | undefined>): string[] => [
  ...new Set([...sources].flatMap((source) => (source?.kind === 'file' ? [source.path] : []))),
]

import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { fail, pathsOf, sourceOf, type Source, type TlsMaterial } from './internal/tls-material.js'
import { readFilesSync, textOf, WatchedFiles, type FileSnapshot } from './internal/watched-file.js'
import { spiffeIdOfCertificate } from './spiffe.js'

/** A client certificate a service presents: to an introspection endpoint (RFC 8705 §2 `tls_client_auth`), or to the services it calls. */
export interface ClientTlsOptions {
  /** Its certificate (PEM; a chain: leaf first), or `{ path }` re-read when the file changes. */
  cert: TlsMaterial
  /** Its private key (PEM, unencrypted), or `{ path }`. */
  key: TlsMaterial
  /** CA certificate(s) that the server's certificate must chain to. Default: Node's root CAs. */
  ca?: TlsMaterial
}

/** The client certificate to open a connection with, as loaded and checked at one moment. Frozen. */
export interface ClientIdentityMaterial {
  /** PEM chain, leaf first. */
  readonly cert: string
  /** PEM private key. */
  readonly key: string
  /** PEM CA bundle to verify servers with (`undefined`: Node's roots). */
  readonly ca: string | undefined
  /** The leaf. */
  readonly certificate: X509Certificate
  /** RFC 8705 §3.1 `x5t#S256`: base64url SHA-256 of the leaf DER. */
  readonly thumbprint: string
  /** The leaf's SPIFFE ID (its URI SAN), when exactly one URI SAN is a valid SPIFFE ID ({@link spiffeIdOfCertificate}). */
  readonly spiffeId: string | undefined
  /** 1 at start, +1 on each applied rotation. */
  readonly generation: number
}

/** The workload certificate of a calling service, followed through rotations. */
export interface ClientIdentity {
  /**
   * The material for a new connection now. Files (`{ path }`) are re-read at most once per
   * `checkInterval` ms (default 1000) — no file I/O on the other calls — with the 'first-read'
   * rule: a loadable new pair is used at once; a pair that does not load (key not the cert's,
   * half-written file) is reported once through onReloadFailure and the previous one stays. No timer.
   */
  current(): Promise<ClientIdentityMaterial>
  /** Called with the new material when a rotation is applied. A callback that throws changes nothing. */
  onReload: ((material: ClientIdentityMaterial) => void) | undefined
  /** Called with the reason when new material is refused (once per distinct content). */
  onReloadFailure: ((reason: string) => void) | undefined
}

const FIELDS = ['cert', 'key', 'ca'] as const
type Field = (typeof FIELDS)[number]
const DEFAULT_CHECK_INTERVAL_MS = 1000

/** The PEM text of `source`: as given, or as its file was read in `snapshot`. */
function readMaterial(source: Source, option: string, snapshot: FileSnapshot): string {
  if (source.kind === 'inline') return source.text
  try {
    return textOf(snapshot, source.path)
  } catch (error) {
    return fail(option, `could not be read: ${(error as Error).message}`)
  }
}

/** Check the option's shape; the source of each field. Throws `TypeError` naming `option`. */
function sourcesOf(value: unknown, option: string): Record<Field, Source | undefined> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(option, 'must be an object { cert, key, ca? } (PEM strings, Buffers or { path })')
  const input = value as Record<string, unknown>
  for (const key of Object.keys(input))
    if (!(FIELDS as readonly string[]).includes(key)) fail(`${option}.${key}`, `is not a known option (known: ${FIELDS.join(', ')})`)
  const sources = {} as Record<Field, Source | undefined>
  for (const field of FIELDS) {
    if (input[field] === undefined && field === 'ca') continue
    sources[field] = sourceOf(input[field], `${option}.${field}`)
  }
  return sources
}

/** Read and check the material (the key is the certificate's); throws `TypeError` naming `option`. */
function loadMaterial(sources: Record<Field, Source | undefined>, option: string, snapshot: FileSnapshot, generation: number): ClientIdentityMaterial {
  const cert = readMaterial(sources.cert!, `${option}.cert`, snapshot)
  const key = readMaterial(sources.key!, `${option}.key`, snapshot)
  const ca = sources.ca === undefined ? undefined : readMaterial(sources.ca, `${option}.ca`, snapshot)
  let certificate: X509Certificate
  try {
    certificate = new X509Certificate(cert)
  } catch (error) {
    return fail(`${option}.cert`, `is not a PEM certificate: ${(error as Error).message}`)
  }
  let privateKey
  try {
    privateKey = createPrivateKey(key)
  } catch (error) {
    return fail(`${option}.key`, `is not an unencrypted PEM private key: ${(error as Error).message}`)
  }
  if (!certificate.checkPrivateKey(privateKey)) fail(`${option}.key`, `is not the private key of ${option}.cert`)
  if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) fail(`${option}.ca`, 'holds no PEM certificate')
  return Object.freeze({
    cert,
    key,
    ca,
    certificate,
    thumbprint: createHash('sha256').update(certificate.raw).digest('base64url'),
    spiffeId: spiffeIdOfCertificate(certificate),
    generation,
  })
}

/** A {@link ClientIdentity} over its options; `material` (the one in use) is for the in-package HTTPS client. */
export class WatchedClientIdentity implements ClientIdentity {
  onReload: ((material: ClientIdentityMaterial) => void) | undefined
  onReloadFailure: ((reason: string) => void) | undefined
  readonly #files: WatchedFiles | undefined
  readonly #checkIntervalMs: number
  #material: ClientIdentityMaterial
  #resolved: Promise<ClientIdentityMaterial>
  #checkedAt: number

  constructor(options: unknown, option: string, checkIntervalMs: number) {
    const sources = sourcesOf(options, option)
    const paths = pathsOf(FIELDS.map((field) => sources[field]))
    const initial = readFilesSync(paths)
    this.#material = loadMaterial(sources, option, initial, 1)
    this.#resolved = Promise.resolve(this.#material)
    this.#checkIntervalMs = checkIntervalMs
    // The read just made counts as a check.
    this.#checkedAt = performance.now()
    this.#files =
      paths.length === 0
        ? undefined
        : new WatchedFiles({
            paths,
            initial,
            confirm: 'first-read',
            apply: (snapshot) => this.#use(loadMaterial(sources, option, snapshot, this.#material.generation + 1)),
            onRefused: (error) => this.#report(() => this.onReloadFailure?.((error as Error).message)),
          })
  }

  /** The material in use now (no file check). */
  get material(): ClientIdentityMaterial {
    return this.#material
  }

  current(): Promise<ClientIdentityMaterial> {
    if (this.#files === undefined) return this.#resolved
    const now = performance.now()
    if (now - this.#checkedAt < this.#checkIntervalMs) return this.#resolved
    this.#checkedAt = now
    // A refusal is reported, never thrown: the caller gets the material in use.
    return this.#files.check().then(
      () => this.#resolved,
      () => this.#resolved,
    )
  }

  #use(material: ClientIdentityMaterial): void {
    this.#material = material
    this.#resolved = Promise.resolve(material)
    this.#report(() => this.onReload?.(material))
  }

  /** Run an application callback: one that throws must not refuse the material or fail `current()`. */
  #report(callback: () => void): void {
    try {
      callback()
    } catch {
      // The callback is the application's report; its failure is its own.
    }
  }
}

/**
 * The workload certificate of a calling service, with rotation: what `@callsign/client` presents
 * (RFC 8705 §2) and reads its `x5t#S256` and SPIFFE ID from. The material is loaded and checked
 * now (the key must be the certificate's); material given as `{ path }` is followed by content
 * through {@link ClientIdentity.current}, without a timer.
 *
 * Throws `TypeError` naming the option (`settings.option`, default `'identity'`) when the material
 * is unusable, or `settings.checkInterval` is not a number of milliseconds ≥ 0 (0: check on every call).
 * Not checked: the certificate's validity dates, chain and key usages (the server's TLS does that).
 * @example
 * const identity = createClientIdentity({ cert: { path: 'svid.pem' }, key: { path: 'svid.key' }, ca: { path: 'bundle.pem' } })
 * const { cert, key, ca, thumbprint } = await identity.current()
 */
export function createClientIdentity(options: ClientTlsOptions, settings: { option?: string; checkInterval?: number } = {}): ClientIdentity {
  const option = settings.option ?? 'identity'
  const checkInterval = settings.checkInterval ?? DEFAULT_CHECK_INTERVAL_MS
  if (typeof checkInterval !== 'number' || !(checkInterval >= 0)) fail('checkInterval', 'must be a number of milliseconds >= 0')
  return new WatchedClientIdentity(options, option, checkInterval)
}

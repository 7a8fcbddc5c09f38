import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls'
import { parseCrl, subjectOf, type ParsedCrl } from './internal/crl.js'
import { countPemBegins, pemDer, scanPem } from './internal/pem.js'
import { fail, isPlainObject, pathsOf, sourceOf, type Source, type TlsMaterial } from './internal/tls-material.js'
import { readFilesSync, textOf, WatchedFiles, type FileSnapshot } from './internal/watched-file.js'
import { parseSpiffeId } from './spiffe.js'

export type { FileRef, TlsMaterial } from './internal/tls-material.js'

/**
 * Each SPIFFE trust domain the server accepts, mapped to its CA bundle (SPIFFE federation). Pass
 * the same object as `createServerTlsOptions({ trustDomains })` (the TLS stack trusts the union)
 * and as the guard's `mtls.trustDomains` (each SPIFFE ID must chain to its own domain's bundle).
 * @example
 * const trustDomains: TrustDomainBundles = { 'example.org': { path: 'bundles/example.org.pem' }, 'partner.org': { path: 'bundles/partner.org.pem' } }
 */
export type TrustDomainBundles = Readonly<Record<string, TlsMaterial>>

/**
 * Outcome of a reload of the server's TLS material, passed to `onReload`.
 * @example
 * onReload: (event) => event.ok ? log.info('TLS reloaded', event.files) : log.error('TLS reload refused', event.error)
 * - `ok: true`: the new material is in use for new handshakes; `files` lists the paths whose content changed.
 * - `ok: false`: the new material was refused (`error` is a `TypeError` naming the option and file);
 *   the previous certificate, key, CA bundle and CRL stay in use.
 */
export type ServerTlsReloadEvent = { ok: true; files: string[] } | { ok: false; error: Error }

/**
 * The server's own certificate is within `expiryWarningDays` of its `notAfter` (RFC 5280 §4.1.2.5),
 * or past it. Passed to `onExpiringSoon`.
 * @example
 * onExpiringSoon: ({ daysLeft, validTo }) => metrics.gauge('tls_server_cert_days_left', daysLeft)
 */
export interface CertificateExpiryEvent {
  subject: 'server'
  /** The certificate's `notAfter`. */
  validTo: Date
  /** Whole days left, rounded down: 0 on the last day, negative once expired. */
  daysLeft: number
}

/**
 * Options of {@link createServerTlsOptions}. Validated when it is called; a bad option throws
 * `TypeError` naming it (`Callsign: "key" (/tls/tls.key) is not the private key of ...`).
 * @example
 * const options: ServerTlsOptions = { cert: { path: 'tls.crt' }, key: { path: 'tls.key' }, ca: { path: 'ca.crt' }, watch: true }
 */
export interface ServerTlsOptions {
  /**
   * The server's certificate, PEM: the leaf first, then any intermediates to send with it.
   * Other PEM blocks (a private key in a combined file) are ignored, as Node ignores them.
   */
  cert: TlsMaterial
  /** The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1). Encrypted keys (a passphrase) are not supported. */
  key: TlsMaterial
  /**
   * The CA certificates client certificates must chain to, PEM, one or more. Only these are
   * trusted: Node's bundled root store is not used for client certificates once `ca` is given.
   * Required unless `trustDomains` is given (exactly one of the two).
   */
  ca?: TlsMaterial
  /**
   * Instead of `ca`: each SPIFFE trust domain mapped to its CA bundle ({@link TrustDomainBundles});
   * the server trusts all the bundles together, each `{ path }` reloaded like `ca`. Give the same
   * map to the guard's `mtls.trustDomains` so each SPIFFE ID must chain to its own domain's bundle.
   */
  trustDomains?: TrustDomainBundles
  /**
   * Certificate revocation lists (RFC 5280 §5), PEM (`-----BEGIN X509 CRL-----`), one or more concatenated.
   * With a CRL set, OpenSSL checks revocation for every certificate of a client's chain
   * (`X509_V_FLAG_CRL_CHECK_ALL`) and refuses a client whose issuing CA has no CRL
   * (`UNABLE_TO_GET_CRL`) or whose CRL is past its `nextUpdate` (`CRL_HAS_EXPIRED`). So every CA
   * in `ca` must have a current CRL here (an empty one if it revoked nothing); that is checked.
   * Revoked clients get `socket.authorizationError` `CERT_REVOKED`, which Callsign answers with 401.
   */
  crl?: TlsMaterial
  /**
   * Re-read the `{ path }` files and swap the material in when their content changes (see
   * {@link ServerTlsBundle.attach}). Polls by content hash (SHA-256) every `intervalMs`
   * (default 5000, at least 10), which also sees atomic renames and Kubernetes `..data`
   * symlink swaps that `fs.watch` misses. A change is applied once two consecutive polls read
   * the same content, so a half-done rotation (new cert, old key) is not reported as an error.
   * Polling runs while at least one server is attached. Default `false`.
   */
  watch?: boolean | { intervalMs?: number }
  /** Lowest TLS version accepted: TLS 1.2 (RFC 5246) or 1.3 (RFC 8446). Default `'TLSv1.2'`. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3'
  /**
   * Called after each reload attempt that found changed content (and after each `reload()` call
   * that fails). Default: refused material is reported with `console.warn`; successes are silent.
   */
  onReload?: (event: ServerTlsReloadEvent) => void
  /**
   * Called when the server's own certificate is within `expiryWarningDays` of expiry: at creation,
   * after each reload and on each watch poll, once per certificate. Default: `console.warn`.
   * (Client certificates near expiry are not covered here.)
   */
  onExpiringSoon?: (event: CertificateExpiryEvent) => void
  /** Days before `notAfter` from which `onExpiringSoon` fires. Default 14. */
  expiryWarningDays?: number
  /**
   * The clock, in epoch milliseconds, for the checks that judge time: the server certificate's
   * expiry (`onExpiringSoon`) and each CRL's `thisUpdate` and `nextUpdate`. Default `Date.now`.
   * Pass the guard's `now` to keep one clock. (OpenSSL judges certificates at handshake time by
   * the system clock.)
   */
  now?: () => number
}

/**
 * Server TLS options for an mTLS service (RFC 8446 §4.3.2 certificate request), spreadable into `https.createServer(...)`, `tls.createServer(...)`
 * or Fastify's `https` option, plus live reloading. `cert`, `key`, `ca` and `crl` always return the
 * material currently in use. The methods are not enumerable, so `{ ...bundle }` is a plain options object.
 * @example
 * const tlsOptions = createServerTlsOptions({ cert: { path: 'tls.crt' }, key: { path: 'tls.key' }, ca: { path: 'ca.crt' }, watch: true })
 * const server = https.createServer({ ...tlsOptions, maxVersion: 'TLSv1.3' }, app)
 * tlsOptions.attach(server)
 */
export interface ServerTlsBundle {
  /** The server certificate chain currently in use, PEM. */
  readonly cert: string
  /** Its private key, PEM. */
  readonly key: string
  /** The trusted client CA bundle currently in use, PEM. */
  readonly ca: string
  /** The CRLs currently in use, one PEM block each (present only if `crl` was given). */
  readonly crl?: string[]
  /** Always `true`: the server asks every client for a certificate (RFC 8446 §4.3.2). */
  readonly requestCert: true
  /**
   * Always `false`: a client without a trusted certificate still completes the handshake, so
   * Callsign can answer it with a precise 401 (untrusted, expired, revoked) instead of a TLS alert.
   * Callsign never accepts a certificate the TLS stack did not authorize (`socket.authorized`).
   */
  readonly rejectUnauthorized: false
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  /**
   * Keep `server` on the current material: applies it now (`server.setSecureContext`), then again
   * after every successful reload, and starts the watch (if `watch` is set) while at least one
   * server is attached. Settings the server was created with besides the material (`ciphers`,
   * `minVersion`, `ticketKeys` ...) are kept. Existing connections keep their handshake; new
   * ones use the new material. Detached on the server's `'close'`.
   * @returns A function that detaches the server again.
   * @example
   * const tlsOptions = createServerTlsOptions({ cert: { path: '/tls/tls.crt' }, key: { path: '/tls/tls.key' }, ca: { path: '/tls/ca.crt' }, watch: true })
   * const server = https.createServer(tlsOptions, app)
   * tlsOptions.attach(server)
   */
  attach(server: TlsServer): () => void
  /**
   * Re-read every `{ path }` now and apply the material if it changed. Resolves `true` when the
   * material in use is the current one (changed and applied, or unchanged), `false` when the new
   * material was refused: the previous one stays in use and `onReload` gets `{ ok: false, error }`.
   * Never rejects.
   * @example
   * process.on('SIGHUP', () => void tlsOptions.reload())
   */
  reload(): Promise<boolean>
  /**
   * Stop watching and detach every server. The servers keep the material they have.
   * @example
   * server.close(); tlsOptions.close()
   */
  close(): void
}

/** An option holding material; a trust domain's bundle is `trustDomains["example.org"]`. */
type Field = 'cert' | 'key' | 'ca' | 'crl' | `trustDomains[${string}]`
const FIELDS = ['cert', 'key', 'ca', 'crl'] as const
const OPTION_KEYS = ['cert', 'key', 'ca', 'trustDomains', 'crl', 'watch', 'minVersion', 'onReload', 'onExpiringSoon', 'expiryWarningDays', 'now']
const DAY_MS = 24 * 60 * 60 * 1000
const DEFAULT_INTERVAL_MS = 5000
const MAX_TIMER_MS = 2 ** 31 - 1

/** Server settings Node keeps on the `tls.Server` and that a new secure context must carry over. */
const PRESERVED_SERVER_SETTINGS = [
  'minVersion',
  'maxVersion',
  'secureProtocol',
  'ciphers',
  'sigalgs',
  'ecdhCurve',
  'dhparam',
  'honorCipherOrder',
  'secureOptions',
  'sessionIdContext',
  'sessionTimeout',
  'ticketKeys',
  'clientCertEngine',
] as const

/** The options of {@link createServerTlsOptions}, checked. */
interface ServerTlsSettings {
  sources: ReadonlyMap<Field, Source>
  /** The files of `sources`, each once. */
  paths: readonly string[]
  minVersion: 'TLSv1.2' | 'TLSv1.3'
  /** Poll interval; `undefined`: no watch. */
  intervalMs: number | undefined
  warningDays: number
  now: () => number
  onReload: (event: ServerTlsReloadEvent) => void
  onExpiringSoon: (event: CertificateExpiryEvent) => void
}

/** The material in use, checked. */
interface Material {
  cert: string
  key: string
  ca: string
  crl: string[] | undefined
  leaf: X509Certificate
}

/**
 * Build the TLS options of an mTLS server from PEM material or files, with validation up front
 * and, optionally, reloading without a restart when the files are rotated (cert-manager,
 * Kubernetes secret volumes, Vault agent, spiffe-helper).
 *
 * Checked now (and on every reload): the certificate parses and `key` is its private key; `ca`
 * holds one or more certificates and nothing else; each CRL parses, is current (`thisUpdate`
 * passed, `nextUpdate` not), and every CA of `ca` has one; Node's TLS stack accepts the lot
 * (`tls.createSecureContext`). A bad option throws `TypeError` naming it.
 *
 * The result requests client certificates (`requestCert: true`) without making the handshake
 * fail for untrusted ones (`rejectUnauthorized: false`): the Callsign middleware refuses those
 * with a 401 that says why. Trust is only `ca` (RFC 5280 §6 path validation by OpenSSL).
 *
 * Not done: CRL signatures are verified by OpenSSL at handshake time, not here; no OCSP or CRL
 * fetching (distribute CRLs as files and let `watch` pick them up); no passphrase-protected
 * keys, PKCS#12 or DER; SNI with several certificates is not managed. Revocation and CA changes
 * apply to new handshakes: established connections are not closed.
 *
 * @example
 * import https from 'node:https'
 * const tlsOptions = createServerTlsOptions({
 *   cert: { path: '/var/run/tls/tls.crt' },
 *   key: { path: '/var/run/tls/tls.key' },
 *   ca: { path: '/var/run/tls/ca.crt' },
 *   watch: true,
 * })
 * const server = https.createServer(tlsOptions, app)
 * tlsOptions.attach(server)
 * // Fastify: const app = fastify({ https: tlsOptions }); tlsOptions.attach(app.server as https.Server)
 */
export function createServerTlsOptions(options: ServerTlsOptions): ServerTlsBundle {
  const settings = resolveServerTls(options)
  const reloader = new ServerTlsReloader(settings)
  const bundle = {} as ServerTlsBundle
  Object.defineProperties(bundle, {
    cert: { enumerable: true, get: () => reloader.current.cert },
    key: { enumerable: true, get: () => reloader.current.key },
    ca: { enumerable: true, get: () => reloader.current.ca },
    ...(settings.sources.has('crl') ? { crl: { enumerable: true, get: () => reloader.current.crl } } : {}),
    requestCert: { enumerable: true, value: true },
    rejectUnauthorized: { enumerable: true, value: false },
    minVersion: { enumerable: true, value: settings.minVersion },
    attach: { value: (server: TlsServer) => reloader.attach(server) },
    reload: { value: () => reloader.reload() },
    close: { value: () => reloader.close() },
  })
  return bundle
}

/** Check the options; throws `TypeError` naming the first bad one. Reads no file. */
function resolveServerTls(options: ServerTlsOptions): ServerTlsSettings {
  if (!isPlainObject(options)) return fail('options', 'must be an object { cert, key, ca, crl?, watch? }')
  for (const name of Object.keys(options)) {
    if (!OPTION_KEYS.includes(name)) fail(name, `is not a known option (known: ${OPTION_KEYS.join(', ')})`)
  }
  const sources = new Map<Field, Source>()
  for (const field of FIELDS) {
    const value: unknown = options[field]
    if (value === undefined && (field === 'crl' || (field === 'ca' && options.trustDomains !== undefined))) continue
    sources.set(field, sourceOf(value, field))
  }
  if (options.trustDomains !== undefined) for (const [field, source] of trustDomainSources(options.trustDomains, sources.has('ca'))) sources.set(field, source)
  const minVersion = options.minVersion ?? 'TLSv1.2'
  if (minVersion !== 'TLSv1.2' && minVersion !== 'TLSv1.3') fail('minVersion', `must be 'TLSv1.2' or 'TLSv1.3' (got ${JSON.stringify(minVersion)})`)
  const intervalMs = resolveWatch(options.watch)
  const paths = pathsOf(sources.values())
  if (intervalMs !== undefined && paths.length === 0) fail('watch', 'needs at least one of "cert", "key", "ca", "crl" given as { path }')
  for (const name of ['onReload', 'onExpiringSoon', 'now'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') fail(name, 'must be a function')
  }
  const warningDays = options.expiryWarningDays ?? 14
  if (typeof warningDays !== 'number' || !Number.isFinite(warningDays) || warningDays < 0) {
    fail('expiryWarningDays', `must be a number >= 0 (got ${JSON.stringify(warningDays)})`)
  }
  const { onReload = warnOnFailedReload, onExpiringSoon = warnOnExpiry, now = Date.now } = options
  return { sources, paths, minVersion, intervalMs, warningDays, now, onReload, onExpiringSoon }
}

/** The `watch` option checked: the poll interval in milliseconds, `undefined` when off. */
function resolveWatch(value: unknown): number | undefined {
  const watch = value ?? false
  if (watch === false) return undefined
  if (watch === true) return DEFAULT_INTERVAL_MS
  if (!isPlainObject(watch)) return fail('watch', `must be a boolean or { intervalMs } (got ${JSON.stringify(watch)})`)
  for (const name of Object.keys(watch)) if (name !== 'intervalMs') fail(`watch.${name}`, 'is not a known option (known: intervalMs)')
  const interval = watch.intervalMs ?? DEFAULT_INTERVAL_MS
  if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 10 || interval > MAX_TIMER_MS) {
    fail('watch.intervalMs', `must be a whole number of milliseconds >= 10 (got ${JSON.stringify(interval)})`)
  }
  return interval as number
}

/** The `trustDomains` option checked: one source per trust domain; throws `TypeError` naming the option. */
function trustDomainSources(value: unknown, hasCa: boolean): Array<[Field, Source]> {
  if (hasCa) fail('trustDomains', 'cannot be combined with "ca": give the client CAs once, as "ca" or as each trust domain\'s bundle')
  if (!isPlainObject(value) || Buffer.isBuffer(value) || Object.keys(value).length === 0) {
    return fail('trustDomains', 'must be an object mapping each SPIFFE trust domain to its CA bundle ({ "example.org": PEM or { path } })')
  }
  return Object.entries(value).map(([domain, material]) => {
    if (parseSpiffeId(`spiffe://${domain}`)?.trustDomain !== domain) {
      fail('trustDomains', `contains an invalid trust domain ${JSON.stringify(domain)} (lower-case letters, digits, ".", "-", "_")`)
    }
    const field: Field = `trustDomains[${JSON.stringify(domain)}]`
    return [field, sourceOf(material, field)]
  })
}

/**
 * The material in use and the servers that use it: material checked before it replaces the
 * current one, every attached server switched together, and the files followed by a
 * {@link WatchedFiles} (polling while a server is attached).
 */
class ServerTlsReloader {
  readonly #settings: ServerTlsSettings
  readonly #files: WatchedFiles
  readonly #servers = new Map<TlsServer, () => void>()
  #current: Material
  #expiryReported: string | undefined
  #closed = false

  /** Reads and checks the material now; throws `TypeError` naming a bad option. */
  constructor(settings: ServerTlsSettings) {
    this.#settings = settings
    // Read synchronously so a bad file fails the start, not the first handshake.
    const initial = readFilesSync(settings.paths)
    this.#current = buildMaterial(settings, initial)
    this.#files = new WatchedFiles({
      paths: settings.paths,
      initial,
      apply: (snapshot, files) => this.#apply(snapshot, files),
      onRefused: (error) => this.#report({ ok: false, error: error as Error }),
      onUnchanged: () => this.#checkExpiry(),
    })
    this.#checkExpiry()
  }

  get current(): Material {
    return this.#current
  }

  attach(server: TlsServer): () => void {
    if (this.#closed) throw new Error('Callsign: attach(server): these server TLS options were closed')
    if (typeof (server as { setSecureContext?: unknown } | null)?.setSecureContext !== 'function') {
      fail('server', 'must be a tls.Server or https.Server (it has no setSecureContext)')
    }
    if (!this.#servers.has(server)) {
      server.setSecureContext(this.#contextFor(server))
      const onClose = (): void => this.#detach(server)
      server.once('close', onClose)
      this.#servers.set(server, onClose)
      if (this.#settings.intervalMs !== undefined) this.#files.start(this.#settings.intervalMs)
    }
    return () => this.#detach(server)
  }

  reload(): Promise<boolean> {
    return this.#files.reload()
  }

  close(): void {
    this.#closed = true
    this.#files.close()
    for (const server of [...this.#servers.keys()]) this.#detach(server)
  }

  #detach(server: TlsServer): void {
    const onClose = this.#servers.get(server)
    if (!onClose) return
    server.off('close', onClose)
    this.#servers.delete(server)
    if (this.#servers.size === 0) this.#files.stop()
  }

  /** Check and swap in new material; throws (nothing changed) if it is refused. */
  #apply(snapshot: FileSnapshot, files: string[]): void {
    const material = buildMaterial(this.#settings, snapshot)
    const previous = this.#current
    this.#current = material
    try {
      // Prove the context for every server first, so either all servers switch or none does.
      const contexts = [...this.#servers.keys()].map((server) => [server, this.#contextFor(server)] as const)
      for (const [, context] of contexts) createSecureContext(context)
      for (const [server, context] of contexts) server.setSecureContext(context)
    } catch (error) {
      this.#current = previous
      throw error
    }
    this.#report({ ok: true, files })
    this.#checkExpiry()
  }

  #contextFor(server: TlsServer): SecureContextOptions {
    const current = this.#current
    const settings: Record<string, unknown> = { minVersion: this.#settings.minVersion }
    const held = server as unknown as Record<string, unknown>
    for (const name of PRESERVED_SERVER_SETTINGS) if (held[name] !== undefined) settings[name] = held[name]
    // Node refuses `minVersion` next to `secureProtocol`: a server created with the latter keeps it alone.
    if (held.secureProtocol !== undefined && held.minVersion === undefined) delete settings.minVersion
    return { ...settings, cert: current.cert, key: current.key, ca: current.ca, ...(current.crl ? { crl: current.crl } : {}) }
  }

  #report(event: ServerTlsReloadEvent): void {
    callHook('onReload', () => this.#settings.onReload(event))
  }

  /** Report the server certificate once when it is within `expiryWarningDays` of its `notAfter`. */
  #checkExpiry(): void {
    const { leaf } = this.#current
    const validTo = new Date(leaf.validTo)
    const msLeft = validTo.getTime() - this.#settings.now()
    if (msLeft > this.#settings.warningDays * DAY_MS || this.#expiryReported === leaf.fingerprint256) return
    this.#expiryReported = leaf.fingerprint256
    callHook('onExpiringSoon', () => this.#settings.onExpiringSoon({ subject: 'server', validTo, daysLeft: Math.floor(msLeft / DAY_MS) }))
  }
}

/** Run a user hook: one that throws is logged and does not stop the reload. */
function callHook(name: string, hook: () => void): void {
  try {
    hook()
  } catch (error) {
    console.warn(`Callsign: "${name}" threw: ${(error as Error)?.message ?? String(error)}`)
  }
}

/** Each option's PEM text as read for one build of the material, and its refusals. */
interface MaterialReader {
  /** The options given, in order. */
  fields: Field[]
  /** The PEM text of `field`, `undefined` when it is not given; throws when its file is unreadable or empty. */
  text(field: Field): string | undefined
  /** Throw the `TypeError` of `field`, naming its file. */
  refuse(field: Field, message: string): never
}

function materialReader(sources: ReadonlyMap<Field, Source>, snapshot: FileSnapshot): MaterialReader {
  const label = (field: Field): string => {
    const source = sources.get(field)
    return source?.kind === 'file' ? `${field}" (${source.path})` : `${field}"`
  }
  return {
    fields: [...sources.keys()],
    text(field) {
      const source = sources.get(field)
      if (!source) return undefined
      if (source.kind === 'inline') return source.text
      let text: string
      try {
        text = textOf(snapshot, source.path)
      } catch (error) {
        return fail(field, `could not be read from ${source.path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
      }
      if (text.trim() === '') fail(field, `(${source.path}) is empty`)
      return text
    },
    // `fail` quotes the option name; the label closes the quote itself to fit the path in.
    refuse(field, message) {
      throw new TypeError(`Callsign: "${label(field)} ${message}`)
    },
  }
}

/** Read, parse and cross-check all material; throws `TypeError` naming the option (and file). */
function buildMaterial({ sources, minVersion, now }: ServerTlsSettings, snapshot: FileSnapshot): Material {
  const read = materialReader(sources, snapshot)
  const { text: cert, leaf } = readCertificate(read)
  const key = readKey(read, leaf)
  const { text: ca, cas } = readTrustedCas(read)
  const crl = readCrls(read, cas, { caOption: sources.has('ca') ? 'ca' : 'trustDomains', now: now() })
  try {
    createSecureContext({ cert, key, ca, ...(crl ? { crl } : {}), minVersion })
  } catch (error) {
    throw new TypeError(`Callsign: "cert", "key", "ca" or "crl" refused by Node's TLS stack: ${(error as Error).message}`, { cause: error })
  }
  return { cert, key, ca, crl, leaf }
}

/** `cert`: its text and its first certificate (the leaf); every certificate of the chain must parse. */
function readCertificate(read: MaterialReader): { text: string; leaf: X509Certificate } {
  const text = read.text('cert')!
  const refuse = (message: string): never => read.refuse('cert', message)
  const blocks = pemBlocks(text, refuse).filter((block) => block.label === 'CERTIFICATE')
  if (blocks.length === 0) refuse('holds no PEM certificate (-----BEGIN CERTIFICATE-----)')
  const chain = blocks.map((block, i) => parseCertificate(block.der, (message) => refuse(`certificate #${i + 1} ${message}`)))
  return { text, leaf: chain[0]! }
}

/** `key`: its text, once it is known to be the private key of `leaf`. */
function readKey(read: MaterialReader, leaf: X509Certificate): string {
  const text = read.text('key')!
  pemBlocks(text, (message) => read.refuse('key', message))
  let key: KeyObject
  try {
    key = createPrivateKey(text)
  } catch (error) {
    return read.refuse('key', `is not a readable unencrypted PEM private key: ${(error as Error).message}`)
  }
  if (!leaf.checkPrivateKey(key)) read.refuse('key', 'is not the private key of the certificate in "cert"')
  return text
}

/** `ca`, or each trust domain's bundle: the server trusts them all together. Certificates only. */
function readTrustedCas(read: MaterialReader): { text: string; cas: X509Certificate[] } {
  const fields = read.fields.filter((field) => field === 'ca' || field.startsWith('trustDomains['))
  const texts: string[] = []
  const cas = fields.flatMap((field) => {
    const text = read.text(field)!
    const blocks = pemBlocks(text, (message) => read.refuse(field, message))
    if (blocks.length === 0) read.refuse(field, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)')
    texts.push(text.endsWith('\n') ? text : `${text}\n`)
    return blocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') read.refuse(field, `block #${i + 1} is a ${JSON.stringify(block.label)}, not a CERTIFICATE`)
      return parseCertificate(block.der, (message) => read.refuse(field, `certificate #${i + 1} ${message}`))
    })
  })
  return { text: fields.length === 1 ? read.text(fields[0]!)! : texts.join(''), cas }
}

/**
 * `crl`: one PEM block per CRL (Node reads only the first CRL of a string), each current at `now`,
 * and one issued by every CA of `cas` (else Node would refuse all its clients). `undefined` when not given.
 */
function readCrls(read: MaterialReader, cas: readonly X509Certificate[], { caOption, now }: { caOption: string; now: number }): string[] | undefined {
  const text = read.text('crl')
  if (text === undefined) return undefined
  const refuse = (message: string): never => read.refuse('crl', message)
  const blocks = pemBlocks(text, refuse)
  if (blocks.length === 0) refuse('holds no PEM CRL (-----BEGIN X509 CRL-----)')
  const issuers = blocks.map((block, i) => currentCrlIssuer(block, `block #${i + 1}`, now, refuse))
  for (const ca of cas) {
    const subject = subjectOf(ca)
    if (subject && !issuers.some((issuer) => issuer.equals(subject))) {
      refuse(
        `has no CRL issued by the CA "${ca.subject}" of "${caOption}"; with "crl" set, Node refuses every client certificate of a CA without one (UNABLE_TO_GET_CRL): add its CRL, an empty one if it revoked nothing`,
      )
    }
  }
  return blocks.map((block) => block.text)
}

/** The issuer (DER Name) of a CRL block that parses and is current at `now`. */
function currentCrlIssuer(block: DecodedPem, name: string, now: number, refuse: (message: string) => never): Buffer {
  if (block.label !== 'X509 CRL') refuse(`${name} is a ${JSON.stringify(block.label)}, not an X509 CRL`)
  let parsed: ParsedCrl
  try {
    parsed = parseCrl(block.der)
  } catch {
    return refuse(`${name} is not a valid X.509 CRL`)
  }
  if (parsed.thisUpdate.getTime() > now) {
    refuse(
      `${name} is not valid before ${parsed.thisUpdate.toISOString()} (thisUpdate); Node would refuse every client certificate of its CA (CRL_NOT_YET_VALID)`,
    )
  }
  if (parsed.nextUpdate && parsed.nextUpdate.getTime() < now) {
    refuse(`${name} expired at ${parsed.nextUpdate.toISOString()} (nextUpdate); Node would refuse every client certificate of its CA (CRL_HAS_EXPIRED)`)
  }
  return parsed.issuer
}

interface DecodedPem {
  label: string
  der: Buffer
  /** The block itself, `-----BEGIN ...` to `-----END ...-----`, plus a newline. */
  text: string
}

/** Every PEM block of `text`, decoded; a truncated or garbled block (a half-written file) is refused. Text between blocks is ignored, as OpenSSL does. */
function pemBlocks(text: string, refuse: (message: string) => never): DecodedPem[] {
  const blocks = scanPem(text).map((block) => {
    if (block.label !== block.endLabel) refuse(`has a PEM block "BEGIN ${block.label}" closed by "END ${block.endLabel}" (a truncated or garbled file?)`)
    const der = pemDer(block) ?? refuse(`has a PEM block "${block.label}" that is not valid base64 (a truncated or garbled file?)`)
    return { label: block.label, der, text: `${block.text}\n` }
  })
  if (countPemBegins(text) !== blocks.length) refuse('has a PEM block without its END line (a truncated, half-written file?)')
  return blocks
}

function parseCertificate(der: Buffer, refuse: (message: string) => never): X509Certificate {
  try {
    return new X509Certificate(der)
  } catch (error) {
    return refuse(`does not parse: ${(error as Error).message}`)
  }
}

function warnOnFailedReload(event: ServerTlsReloadEvent): void {
  if (!event.ok) console.warn(`Callsign: new server TLS material refused, the previous certificate stays in use: ${event.error.message}`)
}

function warnOnExpiry(event: CertificateExpiryEvent): void {
  const when = event.daysLeft < 0 ? 'expired' : `expires in ${event.daysLeft} day${event.daysLeft === 1 ? '' : 's'}`
  console.warn(`Callsign: the server certificate ${when} (notAfter ${event.validTo.toISOString()})`)
}

import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls'
import { childrenOf, readTlv, type Tlv } from './internal/der.js'
import { countPemBegins, pemDer, scanPem } from './internal/pem.js'
import { parseSpiffeId } from './spiffe.js'

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
const OPTION_KEYS = ['cert', 'key', 'ca', 'trustDomains', 'crl', 'watch', 'minVersion', 'onReload', 'onExpiringSoon', 'expiryWarningDays']
const DAY_MS = 24 * 60 * 60 * 1000
const DEFAULT_INTERVAL_MS = 5000
const MAX_TIMER_MS = 2 ** 31 - 1

/** Server settings Node keeps on the `tls.Server` and that a new secure context must carry over. */
const PRESERVED_SERVER_SETTINGS = [
  'minVersion', 'maxVersion', 'secureProtocol', 'ciphers', 'sigalgs', 'ecdhCurve', 'dhparam', 'honorCipherOrder',
  'secureOptions', 'sessionIdContext', 'sessionTimeout', 'ticketKeys', 'clientCertEngine',
] as const

interface Material {
  cert: string
  key: string
  ca: string
  crl: string[] | undefined
  leaf: X509Certificate
}

/** Where PEM material comes from: given inline, or a file read (and re-read) by path. */
export type Source = { kind: 'inline'; text: string } | { kind: 'file'; path: string }

/** What one read of the watched files found: content, or why it could not be read. */
type Snapshot = Map<string, { text: string; hash: string } | { error: Error; hash: string }>

const fail = (option: string, message: string): never => {
  throw new TypeError(`Callsign: "${option}" ${message}`)
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

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
  const watch: unknown = options.watch ?? false
  let intervalMs: number | undefined
  if (watch === true) {
    intervalMs = DEFAULT_INTERVAL_MS
  } else if (isPlainObject(watch)) {
    for (const name of Object.keys(watch)) if (name !== 'intervalMs') fail(`watch.${name}`, 'is not a known option (known: intervalMs)')
    const interval = watch.intervalMs ?? DEFAULT_INTERVAL_MS
    if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 10 || interval > MAX_TIMER_MS) {
      fail('watch.intervalMs', `must be a whole number of milliseconds >= 10 (got ${JSON.stringify(interval)})`)
    }
    intervalMs = interval as number
  } else if (watch !== false) {
    fail('watch', `must be a boolean or { intervalMs } (got ${JSON.stringify(watch)})`)
  }
  const paths = [...new Set([...sources.values()].flatMap((source) => (source.kind === 'file' ? [source.path] : [])))]
  if (intervalMs !== undefined && paths.length === 0) fail('watch', 'needs at least one of "cert", "key", "ca", "crl" given as { path }')
  for (const name of ['onReload', 'onExpiringSoon'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') fail(name, 'must be a function')
  }
  const warningDays = options.expiryWarningDays ?? 14
  if (typeof warningDays !== 'number' || !Number.isFinite(warningDays) || warningDays < 0) {
    fail('expiryWarningDays', `must be a number >= 0 (got ${JSON.stringify(warningDays)})`)
  }
  const onReload = options.onReload ?? warnOnFailedReload
  const onExpiringSoon = options.onExpiringSoon ?? warnOnExpiry

  // Initial material: read synchronously so a bad file fails the start, not the first handshake.
  const initial: Snapshot = new Map()
  for (const path of paths) {
    try {
      const text = readFileSync(path, 'utf8')
      initial.set(path, { text, hash: hashOf(text) })
    } catch (error) {
      initial.set(path, { error: error as Error, hash: 'unreadable' })
    }
  }
  let current = buildMaterial(sources, initial, minVersion)
  let appliedSignature = signatureOf(initial, paths)
  let appliedHashes = new Map([...initial].map(([path, entry]) => [path, entry.hash]))
  let pendingSignature: string | undefined
  let failedSignature: string | undefined
  let expiryReported: string | undefined
  const servers = new Map<TlsServer, () => void>()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  let queue: Promise<unknown> = Promise.resolve()

  const report = (event: ServerTlsReloadEvent): void => {
    try {
      onReload(event)
    } catch (error) {
      console.warn(`Callsign: "onReload" threw: ${(error as Error)?.message ?? String(error)}`)
    }
  }

  const checkExpiry = (): void => {
    const validTo = new Date(current.leaf.validTo)
    const msLeft = validTo.getTime() - Date.now()
    if (msLeft > warningDays * DAY_MS || expiryReported === current.leaf.fingerprint256) return
    expiryReported = current.leaf.fingerprint256
    try {
      onExpiringSoon({ subject: 'server', validTo, daysLeft: Math.floor(msLeft / DAY_MS) })
    } catch (error) {
      console.warn(`Callsign: "onExpiringSoon" threw: ${(error as Error)?.message ?? String(error)}`)
    }
  }

  const contextFor = (server: TlsServer): SecureContextOptions => {
    const settings: Record<string, unknown> = { minVersion }
    const held = server as unknown as Record<string, unknown>
    for (const name of PRESERVED_SERVER_SETTINGS) if (held[name] !== undefined) settings[name] = held[name]
    // Node refuses `minVersion` next to `secureProtocol`: a server created with the latter keeps it alone.
    if (held.secureProtocol !== undefined && held.minVersion === undefined) delete settings.minVersion
    return { ...settings, cert: current.cert, key: current.key, ca: current.ca, ...(current.crl ? { crl: current.crl } : {}) }
  }

  const readAll = async (): Promise<Snapshot> => {
    const snapshot: Snapshot = new Map()
    await Promise.all(paths.map(async (path) => {
      try {
        const text = await readFile(path, 'utf8')
        snapshot.set(path, { text, hash: hashOf(text) })
      } catch (error) {
        snapshot.set(path, { error: error as Error, hash: `unreadable:${(error as NodeJS.ErrnoException).code ?? ''}` })
      }
    }))
    return snapshot
  }

  /** Validate and swap in new material; throws (nothing changed) if it is refused. */
  const apply = (snapshot: Snapshot, signature: string): void => {
    const material = buildMaterial(sources, snapshot, minVersion)
    const previous = current
    current = material
    try {
      // Prove the context for every server first, so either all servers switch or none does.
      const contexts = [...servers.keys()].map((server) => [server, contextFor(server)] as const)
      for (const [, context] of contexts) createSecureContext(context)
      for (const [server, context] of contexts) server.setSecureContext(context)
    } catch (error) {
      current = previous
      throw error
    }
    const files = paths.filter((path) => appliedHashes.get(path) !== snapshot.get(path)?.hash)
    appliedSignature = signature
    appliedHashes = new Map([...snapshot].map(([path, entry]) => [path, entry.hash]))
    failedSignature = undefined
    report({ ok: true, files })
    checkExpiry()
  }

  const poll = async (): Promise<void> => {
    const snapshot = await readAll()
    if (closed) return
    const signature = signatureOf(snapshot, paths)
    if (signature === appliedSignature) {
      pendingSignature = undefined
      checkExpiry()
      return
    }
    if (signature !== pendingSignature) {
      // Changed since the last poll: wait one more interval for the rotation to settle.
      pendingSignature = signature
      return
    }
    if (signature === failedSignature) return
    try {
      apply(snapshot, signature)
    } catch (error) {
      failedSignature = signature
      report({ ok: false, error: error as Error })
    }
  }

  const enqueue = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task, task)
    queue = run.catch(() => undefined)
    return run
  }

  const schedule = (): void => {
    if (intervalMs === undefined || timer !== undefined || closed || servers.size === 0) return
    const mine = setTimeout(() => {
      void enqueue(poll).finally(() => {
        // A detach + attach during the poll may have started another timer: keep only one.
        if (timer === mine) timer = undefined
        schedule()
      })
    }, intervalMs)
    mine.unref()
    timer = mine
  }

  const detach = (server: TlsServer): void => {
    const onClose = servers.get(server)
    if (!onClose) return
    server.off('close', onClose)
    servers.delete(server)
    if (servers.size === 0 && timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
  }

  const attach = (server: TlsServer): (() => void) => {
    if (closed) throw new Error('Callsign: attach(server): these server TLS options were closed')
    if (typeof (server as { setSecureContext?: unknown } | null)?.setSecureContext !== 'function') {
      fail('server', 'must be a tls.Server or https.Server (it has no setSecureContext)')
    }
    if (!servers.has(server)) {
      server.setSecureContext(contextFor(server))
      const onClose = (): void => detach(server)
      server.once('close', onClose)
      servers.set(server, onClose)
      schedule()
    }
    return () => detach(server)
  }

  const reload = (): Promise<boolean> => enqueue(async () => {
    const snapshot = await readAll()
    const signature = signatureOf(snapshot, paths)
    if (signature === appliedSignature) return true
    try {
      apply(snapshot, signature)
      return true
    } catch (error) {
      failedSignature = signature
      report({ ok: false, error: error as Error })
      return false
    }
  })

  const close = (): void => {
    closed = true
    for (const server of [...servers.keys()]) detach(server)
  }

  checkExpiry()

  const bundle = {} as ServerTlsBundle
  Object.defineProperties(bundle, {
    cert: { enumerable: true, get: () => current.cert },
    key: { enumerable: true, get: () => current.key },
    ca: { enumerable: true, get: () => current.ca },
    ...(sources.has('crl') ? { crl: { enumerable: true, get: () => current.crl } } : {}),
    requestCert: { enumerable: true, value: true },
    rejectUnauthorized: { enumerable: true, value: false },
    minVersion: { enumerable: true, value: minVersion },
    attach: { value: attach },
    reload: { value: reload },
    close: { value: close },
  })
  return bundle
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

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex')

const signatureOf = (snapshot: Snapshot, paths: readonly string[]): string =>
  paths.map((path) => snapshot.get(path)?.hash ?? 'missing').join(',')

/** Read, parse and cross-check all material; throws `TypeError` naming the option (and file). */
function buildMaterial(sources: ReadonlyMap<Field, Source>, snapshot: Snapshot, minVersion: string): Material {
  const text = (field: Field): string | undefined => {
    const source = sources.get(field)
    if (!source) return undefined
    if (source.kind === 'inline') return source.text
    const entry = snapshot.get(source.path)
    if (!entry || 'error' in entry) {
      const error = entry && 'error' in entry ? entry.error : undefined
      return fail(field, `could not be read from ${source.path}: ${(error as NodeJS.ErrnoException | undefined)?.code ?? error?.message ?? 'not read'}`)
    }
    if (entry.text.trim() === '') fail(field, `(${source.path}) is empty`)
    return entry.text
  }
  const label = (field: Field): string => {
    const source = sources.get(field)
    return source?.kind === 'file' ? `${field}" (${source.path})` : `${field}"`
  }
  // `fail` quotes the option name; the label closes the quote itself to fit the path in.
  const refuse = (field: Field, message: string): never => {
    throw new TypeError(`Callsign: "${label(field)} ${message}`)
  }

  const certText = text('cert')!
  const certBlocks = pemBlocks(certText, (message) => refuse('cert', message)).filter((block) => block.label === 'CERTIFICATE')
  if (certBlocks.length === 0) refuse('cert', 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)')
  const chain = certBlocks.map((block, i) => parseCertificate(block.der, (message) => refuse('cert', `certificate #${i + 1} ${message}`)))
  const leaf = chain[0]!

  const keyText = text('key')!
  pemBlocks(keyText, (message) => refuse('key', message))
  let key: KeyObject
  try {
    key = createPrivateKey(keyText)
  } catch (error) {
    return refuse('key', `is not a readable unencrypted PEM private key: ${(error as Error).message}`)
  }
  if (!leaf.checkPrivateKey(key)) refuse('key', 'is not the private key of the certificate in "cert"')

  // `ca`, or each trust domain's bundle: the server trusts them all together.
  const caFields = [...sources.keys()].filter((field) => field === 'ca' || field.startsWith('trustDomains['))
  const caTexts: string[] = []
  const cas = caFields.flatMap((field) => {
    const fieldText = text(field)!
    const caBlocks = pemBlocks(fieldText, (message) => refuse(field, message))
    if (caBlocks.length === 0) refuse(field, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)')
    caTexts.push(fieldText.endsWith('\n') ? fieldText : `${fieldText}\n`)
    return caBlocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') refuse(field, `block #${i + 1} is a ${JSON.stringify(block.label)}, not a CERTIFICATE`)
      return parseCertificate(block.der, (message) => refuse(field, `certificate #${i + 1} ${message}`))
    })
  })
  const caText = caFields.length === 1 ? text(caFields[0]!)! : caTexts.join('')

  let crl: string[] | undefined
  const crlText = text('crl')
  if (crlText !== undefined) {
    const blocks = pemBlocks(crlText, (message) => refuse('crl', message))
    if (blocks.length === 0) refuse('crl', 'holds no PEM CRL (-----BEGIN X509 CRL-----)')
    const now = Date.now()
    const issuers: Buffer[] = []
    blocks.forEach((block, i) => {
      if (block.label !== 'X509 CRL') refuse('crl', `block #${i + 1} is a ${JSON.stringify(block.label)}, not an X509 CRL`)
      let parsed: ParsedCrl
      try {
        parsed = parseCrl(block.der)
      } catch {
        return refuse('crl', `block #${i + 1} is not a valid X.509 CRL`)
      }
      if (parsed.thisUpdate.getTime() > now) {
        refuse('crl', `block #${i + 1} is not valid before ${parsed.thisUpdate.toISOString()} (thisUpdate); Node would refuse every client certificate of its CA (CRL_NOT_YET_VALID)`)
      }
      if (parsed.nextUpdate && parsed.nextUpdate.getTime() < now) {
        refuse('crl', `block #${i + 1} expired at ${parsed.nextUpdate.toISOString()} (nextUpdate); Node would refuse every client certificate of its CA (CRL_HAS_EXPIRED)`)
      }
      issuers.push(parsed.issuer)
    })
    for (const ca of cas) {
      const subject = subjectOf(ca)
      if (subject && !issuers.some((issuer) => issuer.equals(subject))) {
        refuse('crl', `has no CRL issued by the CA "${ca.subject}" of "${sources.has('ca') ? 'ca' : 'trustDomains'}"; with "crl" set, Node refuses every client certificate of a CA without one (UNABLE_TO_GET_CRL): add its CRL, an empty one if it revoked nothing`)
      }
    }
    // Node reads only the first CRL of a string: pass each as its own entry.
    crl = blocks.map((block) => block.text)
  }

  try {
    createSecureContext({ cert: certText, key: keyText, ca: caText, ...(crl ? { crl } : {}), minVersion: minVersion as 'TLSv1.2' })
  } catch (error) {
    throw new TypeError(`Callsign: "cert", "key", "ca" or "crl" refused by Node's TLS stack: ${(error as Error).message}`)
  }
  return { cert: certText, key: keyText, ca: caText, crl, leaf }
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

// --- Just enough of a CRL and a certificate to find a CRL's issuer and dates and a certificate's subject.

/** RFC 5280 §4.1.2.5: UTCTime (YYMMDDHHMMSSZ, 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
function readTime(der: Uint8Array, tlv: Tlv): Date {
  const value = Buffer.from(der.subarray(tlv.start, tlv.end)).toString('latin1')
  const match = tlv.tag === 0x17
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(value)
    : tlv.tag === 0x18 ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(value) : null
  if (!match) throw new RangeError('bad time')
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number]
  const fullYear = tlv.tag === 0x17 ? (year < 50 ? 2000 + year : 1900 + year) : year
  return new Date(Date.UTC(fullYear, month - 1, day, hour, minute, second))
}

interface ParsedCrl {
  /** DER of the issuer Name. */
  issuer: Buffer
  thisUpdate: Date
  nextUpdate: Date | undefined
}

/** RFC 5280 §5.1: CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }. */
function parseCrl(der: Buffer): ParsedCrl {
  const outer = readTlv(der, 0, der.length)
  if (outer.tag !== 0x30 || outer.end !== der.length) throw new RangeError('not a CRL')
  const [tbs, algorithm, signature, extra] = childrenOf(der, outer)
  if (!tbs || tbs.tag !== 0x30 || algorithm?.tag !== 0x30 || signature?.tag !== 0x03 || extra) throw new RangeError('not a CRL')
  const fields = childrenOf(der, tbs)
  const first = fields[0]?.tag === 0x02 ? 1 : 0 // optional version
  const issuer = fields[first + 1]
  const thisUpdate = fields[first + 2]
  const nextUpdate = fields[first + 3]
  if (fields[first]?.tag !== 0x30 || issuer?.tag !== 0x30 || !thisUpdate) throw new RangeError('not a CRL')
  return {
    issuer: der.subarray(issuer.offset, issuer.end),
    thisUpdate: readTime(der, thisUpdate),
    nextUpdate: nextUpdate && (nextUpdate.tag === 0x17 || nextUpdate.tag === 0x18) ? readTime(der, nextUpdate) : undefined,
  }
}

/** DER of a certificate's subject Name (RFC 5280 §4.1), or `undefined` if it cannot be found. */
function subjectOf(cert: X509Certificate): Buffer | undefined {
  try {
    const der = cert.raw
    const tbs = childrenOf(der, readTlv(der, 0, der.length))[0]
    if (!tbs) return undefined
    const fields = childrenOf(der, tbs)
    const first = fields[0]?.tag === 0xa0 ? 1 : 0 // [0] EXPLICIT version
    const subject = fields[first + 4] // serialNumber, signature, issuer, validity, subject
    return subject?.tag === 0x30 ? der.subarray(subject.offset, subject.end) : undefined
  } catch {
    return undefined
  }
}

function warnOnFailedReload(event: ServerTlsReloadEvent): void {
  if (!event.ok) console.warn(`Callsign: new server TLS material refused, the previous certificate stays in use: ${event.error.message}`)
}

function warnOnExpiry(event: CertificateExpiryEvent): void {
  const when = event.daysLeft < 0 ? 'expired' : `expires in ${event.daysLeft} day${event.daysLeft === 1 ? '' : 's'}`
  console.warn(`Callsign: the server certificate ${when} (notAfter ${event.validTo.toISOString()})`)
}

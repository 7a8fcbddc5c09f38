import type { X509Certificate } from 'node:crypto'
import { AuthError } from './errors.js'
import { parseAnchors, type ForwardedTrustBundles } from './forwarded-certificate.js'
import { buildCertificatePath } from './internal/certificate-path.js'
import { countPemBegins, pemCertificateBlocks } from './internal/pem.js'
import type { TlsMaterial } from './internal/tls-material.js'
import { readOfText, textOf, WatchedFiles } from './internal/watched-file.js'
import type { PeerSocket } from './request.js'
import { parseSpiffeId } from './spiffe.js'

/**
 * The X.509 bundle of one SPIFFE trust domain (its CA certificates, PEM): PEM text, several PEM
 * texts, a `Buffer`, or `{ path }` of a PEM file read at startup and re-read every `pollSeconds`
 * (default 5) when it changes. The forms of {@link TlsMaterial} also fit `createServerTlsOptions`.
 * @example
 * const bundle: TrustBundleSource = { path: '/var/run/spiffe/bundles/partner.org.pem' }
 */
export type TrustBundleSource = TlsMaterial | readonly string[] | { path: string; pollSeconds?: number }

/** One bundle as resolved at startup: its PEM text, and the file to watch if it came from one. */
export interface TrustBundleSpec {
  domain: string
  /** The option that gave it, for messages: `mtls.trustDomains["partner.org"]`. */
  option: string
  text: string
  path: string | undefined
  pollSeconds: number
}

/** The certificates of a bundle's PEM text; throws `TypeError` naming `option` (a half-written file included). */
export function parseBundle(text: string, option: string): X509Certificate[] {
  if (countPemBegins(text, 'CERTIFICATE') !== pemCertificateBlocks(text).length) {
    throw new TypeError(`Callsign: "${option}" has a PEM certificate without its END line (a truncated, half-written file?)`)
  }
  return parseAnchors(text, option)
}

/**
 * The trust-domain bundles as the resolved config gives them: forwarded certificates (see
 * {@link ForwardedTrustBundles}), one domain's anchors, the check of each TLS connection, and the
 * file watch.
 */
export interface PeerTrustBundles extends ForwardedTrustBundles {
  /** The anchors of `domain`'s bundle, `undefined` when it has none. */
  anchorsOf(domain: string): readonly X509Certificate[] | undefined
  /** Refuse (`AuthError('peer_unauthorized')`) a connection whose SPIFFE ID does not chain to its domain's bundle; cached per connection. */
  checkConnection(socket: object, spiffeId: string, chain: readonly X509Certificate[], now: number): void
  /** Start re-reading the bundle files. Idempotent. */
  watch(): void
  /** Stop re-reading the bundle files. Idempotent. */
  close(): void
}

const NOT_CHAINED = "client certificate does not chain to its trust domain's bundle"

/**
 * The trust domains of `mtls.trustDomains` given as a map, each with its CA bundle: a SPIFFE ID
 * of domain D is proven only by a path to one of D's anchors (SPIFFE federation), whichever CA
 * the server's TLS stack trusts. Bundles read from files are swapped in when the file changes
 * ({@link watch}); a bad new file keeps the previous bundle and is logged.
 */
export class TrustBundles implements PeerTrustBundles {
  /** Bumped on every bundle change, so verdicts cached before it are made again. */
  generation = 0
  readonly #bundles = new Map<string, readonly X509Certificate[]>()
  readonly #specs: readonly TrustBundleSpec[]
  readonly #warn: (message: string, details: Record<string, unknown>) => void
  readonly #byConnection = new WeakMap<object, { generation: number; refusal: string | undefined }>()
  readonly #watches: WatchedFiles[] = []
  #union: readonly X509Certificate[] | undefined
  #watching = false
  #closed = false

  /** Parses every bundle now; throws `TypeError` naming the option of a bad one. */
  constructor(specs: readonly TrustBundleSpec[], warn: (message: string, details: Record<string, unknown>) => void) {
    this.#specs = specs
    this.#warn = warn
    for (const spec of specs) this.#bundles.set(spec.domain, Object.freeze(parseBundle(spec.text, spec.option)))
  }

  /** The trust domains that have a bundle. */
  domains(): string[] {
    return [...this.#bundles.keys()]
  }

  /** The anchors of `domain`'s bundle, `undefined` when it has none. */
  anchorsOf(domain: string): readonly X509Certificate[] | undefined {
    return this.#bundles.get(domain)
  }

  /** Every anchor of every bundle (the default anchors of forwarded certificates). */
  anchors(): readonly X509Certificate[] {
    this.#union ??= Object.freeze([...this.#bundles.values()].flat())
    return this.#union
  }

  /**
   * Refuse (`AuthError('peer_unauthorized')`) a certificate whose SPIFFE ID names a trust domain
   * with a bundle unless `leaf` chains to that bundle through `intermediates`; returns that path.
   * A domain without a bundle passes here (`undefined`): `mtls.trustDomains` refuses it as not
   * accepted.
   */
  checkChain(spiffeId: string, leaf: X509Certificate, intermediates: readonly X509Certificate[], now: number): X509Certificate[] | undefined {
    const domain = parseSpiffeId(spiffeId)?.trustDomain
    const anchors = domain === undefined ? undefined : this.#bundles.get(domain)
    if (!anchors) return undefined
    try {
      return buildCertificatePath(leaf, intermediates, anchors, now)
    } catch {
      throw new AuthError('peer_unauthorized', NOT_CHAINED, { check: 'client certificate' })
    }
  }

  /**
   * {@link checkChain} for the certificate a TLS connection authorized, with the chain its client
   * sent (the `chain` of `readPeerCertificate`'s state: Node gives it out only once), once per
   * connection and again after a bundle change: a reused connection costs a WeakMap lookup.
   */
  checkConnection(socket: object, spiffeId: string, chain: readonly X509Certificate[], now: number): void {
    let verdict = this.#byConnection.get(socket)
    if (verdict?.generation !== this.generation) {
      verdict = { generation: this.generation, refusal: this.#refusalFor(socket as PeerSocket, spiffeId, chain, now) }
      this.#byConnection.set(socket, verdict)
    }
    if (verdict.refusal !== undefined) throw new AuthError('peer_unauthorized', verdict.refusal, { check: 'client certificate' })
  }

  /**
   * Start re-reading the bundle files, each every `pollSeconds` (timers that do not keep the
   * process alive), by the rules of {@link WatchedFiles}: a change is swapped in once two reads
   * in a row agree; a bad or unreadable file keeps the previous bundle and is logged once.
   * Idempotent; nothing once {@link close}d.
   */
  watch(): void {
    if (this.#watching || this.#closed) return
    this.#watching = true
    for (const spec of this.#specs) if (spec.path !== undefined) this.#watches.push(this.#watchFile(spec, spec.path))
  }

  /** Stop re-reading the bundle files; the bundles in use stay. Idempotent. */
  close(): void {
    this.#closed = true
    for (const watch of this.#watches) watch.close()
  }

  #watchFile(spec: TrustBundleSpec, path: string): WatchedFiles {
    const watch = new WatchedFiles({
      paths: [path],
      initial: new Map([[path, readOfText(spec.text)]]),
      apply: (snapshot) => this.#set(spec.domain, parseBundle(textOf(snapshot, path), spec.option)),
      onRefused: (error, snapshot) => {
        const unreadable = 'error' in snapshot.get(path)!
        this.#warn(
          unreadable
            ? "callsign: could not read a trust domain's bundle; keeping the previous one"
            : "callsign: a trust domain's new bundle is refused; keeping the previous one",
          { trustDomain: spec.domain, reason: (error as Error).message },
        )
      },
    })
    watch.start(spec.pollSeconds * 1000)
    return watch
  }

  #set(domain: string, anchors: X509Certificate[]): void {
    this.#bundles.set(domain, Object.freeze(anchors))
    this.#union = undefined
    this.generation++
  }

  #refusalFor(socket: PeerSocket, spiffeId: string, chain: readonly X509Certificate[], now: number): string | undefined {
    const leaf = socket.getPeerX509Certificate?.()
    if (!leaf) return NOT_CHAINED
    try {
      this.checkChain(spiffeId, leaf, chain, now)
      return undefined
    } catch (error) {
      return (error as AuthError).message
    }
  }
}

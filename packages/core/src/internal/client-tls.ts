import { createPrivateKey, X509Certificate } from 'node:crypto'
import { Agent, request } from 'node:https'
import { Readable } from 'node:stream'
import { fail, pathsOf, sourceOf, type Source, type TlsMaterial } from './tls-material.js'
import { readFilesSync, textOf, WatchedFiles, type FileSnapshot } from './watched-file.js'

/** The client certificate a resource server presents (RFC 8705 §2 `tls_client_auth`). */
export interface ClientTlsOptions {
  /** Its certificate (PEM; a chain: leaf first), or `{ path }` re-read when the file changes. */
  cert: TlsMaterial
  /** Its private key (PEM, unencrypted), or `{ path }`. */
  key: TlsMaterial
  /** CA certificate(s) that the server's certificate must chain to. Default: Node's root CAs. */
  ca?: TlsMaterial
}

const FIELDS = ['cert', 'key', 'ca'] as const
type Field = (typeof FIELDS)[number]

/** The PEM text of `source`: as given, or as its file was read in `snapshot`. */
function readMaterial(source: Source, option: string, snapshot: FileSnapshot): string {
  if (source.kind === 'inline') return source.text
  try {
    return textOf(snapshot, source.path)
  } catch (error) {
    return fail(option, `could not be read: ${(error as Error).message}`)
  }
}

/**
 * An HTTPS client that presents a certificate: a `fetch`-compatible function over `node:https`
 * with a keep-alive agent holding the certificate and key. Material given as `{ path }` is
 * read again before each request and compared by content (a {@link WatchedFiles} with the
 * `'first-read'` rule: the request about to go out uses a rotated certificate at once); new
 * material that does not load (a key that is not the certificate's, a file half written) is
 * reported once and the previous one stays in use. No timer.
 */
export class ClientTls {
  readonly #sources: Record<Field, Source | undefined>
  readonly #option: string
  readonly #files: WatchedFiles | undefined
  #agent: Agent
  /** Called with the reason when reloaded material is refused. */
  onReloadFailure: ((reason: string) => void) | undefined

  /** Loads and checks the material now; throws `TypeError` naming `option` when it is unusable. */
  constructor(value: unknown, option: string) {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      fail(option, 'must be an object { cert, key, ca? } (PEM strings, Buffers or { path })')
    const input = value as Record<string, unknown>
    for (const key of Object.keys(input))
      if (!(FIELDS as readonly string[]).includes(key)) fail(`${option}.${key}`, `is not a known option (known: ${FIELDS.join(', ')})`)
    this.#option = option
    const sources = {} as Record<Field, Source | undefined>
    for (const field of FIELDS) {
      if (input[field] === undefined && field === 'ca') continue
      sources[field] = sourceOf(input[field], `${option}.${field}`)
    }
    this.#sources = sources
    const paths = pathsOf(FIELDS.map((field) => sources[field]))
    const initial = readFilesSync(paths)
    this.#agent = this.#load(initial)
    this.#files =
      paths.length === 0
        ? undefined
        : new WatchedFiles({
            paths,
            initial,
            confirm: 'first-read',
            apply: (snapshot) => {
              const next = this.#load(snapshot)
              this.#agent.destroy()
              this.#agent = next
            },
            onRefused: (error) => this.onReloadFailure?.((error as Error).message),
          })
  }

  /** Read and check the material; a keep-alive agent that presents it. Throws `TypeError`. */
  #load(snapshot: FileSnapshot): Agent {
    const option = this.#option
    const cert = readMaterial(this.#sources.cert!, `${option}.cert`, snapshot)
    const key = readMaterial(this.#sources.key!, `${option}.key`, snapshot)
    const ca = this.#sources.ca === undefined ? undefined : readMaterial(this.#sources.ca, `${option}.ca`, snapshot)
    let leaf: X509Certificate
    try {
      leaf = new X509Certificate(cert)
    } catch (error) {
      return fail(`${option}.cert`, `is not a PEM certificate: ${(error as Error).message}`)
    }
    let privateKey
    try {
      privateKey = createPrivateKey(key)
    } catch (error) {
      return fail(`${option}.key`, `is not an unencrypted PEM private key: ${(error as Error).message}`)
    }
    if (!leaf.checkPrivateKey(privateKey)) fail(`${option}.key`, `is not the private key of ${option}.cert`)
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) fail(`${option}.ca`, 'holds no PEM certificate')
    return new Agent({ cert, key, ...(ca === undefined ? {} : { ca }), keepAlive: true, maxCachedSessions: 10 })
  }

  /**
   * A `fetch` (string URL, method, headers, string body, signal) over HTTPS with the client
   * certificate. No redirects. A request that fails with ECONNRESET on a reused keep-alive
   * connection (the server closed it while idle) is sent once more on a new one.
   */
  readonly fetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
    if (url.protocol !== 'https:') return Promise.reject(new TypeError(`${url.href}: a client certificate is only presented over https`))
    const headers: Record<string, string> = {}
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value
    })
    const body = typeof init.body === 'string' ? init.body : undefined
    const send = (agent: Agent, retry: boolean): Promise<Response> =>
      new Promise<Response>((resolve, reject) => {
        const signal = init.signal ?? undefined
        if (signal?.aborted) return reject(signal.reason)
        const req = request(url, { method: init.method ?? 'GET', headers, agent }, (res) => {
          const responseHeaders = new Headers()
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) responseHeaders.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!)
          const status = res.statusCode ?? 502
          const empty = status === 204 || status === 304 || init.method === 'HEAD'
          if (empty) res.resume()
          resolve(
            new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status,
              statusText: res.statusMessage ?? '',
              headers: responseHeaders,
            }),
          )
        })
        const abort = (): void => {
          req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
        }
        signal?.addEventListener('abort', abort, { once: true })
        req.once('close', () => signal?.removeEventListener('abort', abort))
        req.once('error', (error: NodeJS.ErrnoException) => {
          if (retry && req.reusedSocket && error.code === 'ECONNRESET' && !signal?.aborted) resolve(send(agent, false))
          else reject(error)
        })
        req.end(body)
      })
    // New material that does not load is reported, not thrown: the request goes out with the agent in use.
    const checked = this.#files?.check()
    return checked ? checked.then(() => send(this.#agent, true)) : send(this.#agent, true)
  }

  /** Close idle connections. */
  close(): void {
    this.#agent.destroy()
  }
}

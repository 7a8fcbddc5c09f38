import { Agent, request } from 'node:https'
import { Readable } from 'node:stream'
import { WatchedClientIdentity, type ClientIdentityMaterial } from '../client-identity.js'

export type { ClientTlsOptions } from '../client-identity.js'

/**
 * An HTTPS client that presents a certificate: a `fetch`-compatible function over `node:https`
 * with a keep-alive agent holding the certificate and key. Material given as `{ path }` is
 * read again before each request and compared by content (a client identity checked with no
 * interval: the request about to go out uses a rotated certificate at once); new
 * material that does not load (a key that is not the certificate's, a file half written) is
 * reported once and the previous one stays in use. No timer.
 */
export class ClientTls {
  readonly #identity: WatchedClientIdentity
  #material: ClientIdentityMaterial
  #agent: Agent
  /** Called with the reason when reloaded material is refused. */
  onReloadFailure: ((reason: string) => void) | undefined

  /** Loads and checks the material now; throws `TypeError` naming `option` when it is unusable. */
  constructor(value: unknown, option: string) {
    // Checked before each request (interval 0): the request about to go out uses a rotated certificate.
    this.#identity = new WatchedClientIdentity(value, option, 0)
    this.#identity.onReloadFailure = (reason) => this.onReloadFailure?.(reason)
    this.#material = this.#identity.material
    this.#agent = agentFor(this.#material)
  }

  /** The keep-alive agent presenting `material`; the previous one is closed when the material rotated. */
  #agentFor(material: ClientIdentityMaterial): Agent {
    // Two checks may resolve close together: never go back to an older generation.
    if (material.generation > this.#material.generation) {
      this.#agent.destroy()
      this.#material = material
      this.#agent = agentFor(material)
    }
    return this.#agent
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
    // New material that does not load is reported, not thrown: the request goes out with the material in use.
    return this.#identity.current().then((material) => send(this.#agentFor(material), true))
  }

  /** Close idle connections. */
  close(): void {
    this.#agent.destroy()
  }
}

const agentFor = ({ cert, key, ca }: ClientIdentityMaterial): Agent =>
  new Agent({ cert, key, ...(ca === undefined ? {} : { ca }), keepAlive: true, maxCachedSessions: 10 })

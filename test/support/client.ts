/**
 * A deliberately plain HTTPS client on `node:https`: one fresh TLS connection per call
 * (`agent: false`), so a client certificate presented on one call never leaks into the next.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { request, type Agent } from 'node:https'

/** A client certificate and its key, as `@callsign/testing` issues them. */
export interface ClientIdentity {
  certPem: string
  keyPem: string
}

export interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Path and query, e.g. `/orders?x=1`. Default `/whoami`. */
  path?: string
  /** Shorthand for `authorization: Bearer <token>`. */
  token?: string
  /** The raw `Authorization` value; an array sends the header once per value (duplicate headers). */
  authorization?: string | string[]
  /** Extra headers; an array value sends the header once per value. */
  headers?: Record<string, string | string[]>
  /** Client certificate presented in the TLS handshake. */
  cert?: ClientIdentity | undefined
  /** Request body (sent as is). */
  body?: string
  /** Reuse connections through this agent (e.g. keep-alive for floods). Default: a fresh connection per call. */
  agent?: Agent
}

export interface CallResult {
  status: number
  headers: IncomingHttpHeaders
  /** Parsed JSON when the response is JSON (`application/json`, `application/problem+json`), else the text. */

  body: any
  text: string
}

const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i

/**
 * Call `baseUrl + options.path` over HTTPS, trusting only `trust` (the test CA, PEM) for the
 * server certificate.
 */
export function call(baseUrl: string, trust: string, options: CallOptions = {}): Promise<CallResult> {
  const url = new URL(options.path ?? '/whoami', baseUrl)
  return new Promise<CallResult>((resolve, reject) => {
    const req = request(
      {
        protocol: 'https:',
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'GET',
        ca: [trust],
        agent: options.agent ?? false,
        ...(options.cert ? { cert: options.cert.certPem, key: options.cert.keyPem } : {}),
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          if (JSON_TYPE.test(res.headers['content-type'] ?? '') && text.length > 0) {
            try {
              body = JSON.parse(text)
            } catch (error) {
              reject(new Error(`response claims JSON but is not: ${text.slice(0, 200)}`, { cause: error }))
              return
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text })
        })
      },
    )
    req.on('error', reject)
    for (const [name, value] of Object.entries(options.headers ?? {})) req.setHeader(name, value)
    if (options.token !== undefined) req.setHeader('authorization', `Bearer ${options.token}`)
    if (options.authorization !== undefined) req.setHeader('authorization', options.authorization)
    if (options.body !== undefined) req.end(options.body)
    else req.end()
  })
}

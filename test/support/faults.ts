/**
 * Fault-injection helpers for test/faults: a scripted HTTP server that answers each path with a
 * chosen document or failure (malformed JWKS, chunked oversize bodies, resets and hangs in the
 * middle of a body), a capturing logger, a `fetch` that counts (and timestamps) its calls, a
 * bare in-process request for `guard.authenticate`, and small timing helpers.
 * Additive: nothing else in test/support depends on it.
 */
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect } from 'vitest'
import type { AuthRequest, Logger } from '@callsign/core'
import type { CallResult } from './client.js'

/** How the scripted server answers one path. */
export type ScriptedResponse =
  /** A JSON document (any JSON value: arrays, strings ... not only JWK Sets). */
  | { json: unknown; status?: number; headers?: Record<string, string> }
  /** A raw body (with `content-length`). */
  | { body: string; status?: number; headers?: Record<string, string> }
  /** `bytes` of valid-looking JSON sent in chunks WITHOUT `content-length` (chunked encoding). */
  | { chunkedBytes: number }
  /** `200`, headers and the first half of `json`, then a TCP reset. */
  | { resetMidBody: unknown }
  /** `200`, headers and the first half of `json`, then nothing (the connection stays open). */
  | { hangMidBody: unknown }
  /** No answer at all. */
  | { hang: true }
  /** TCP reset before any answer. */
  | { reset: true }

export interface ScriptedServer {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  /** Absolute URL of `path` on this server. */
  url(path: string): string
  /** Answer `path` with `response` from now on (`undefined`: 404). */
  script(path: string, response: ScriptedResponse | undefined): void
  /** Requests received, all paths or one. */
  requestCount(path?: string): number
  close(): Promise<void>
}

/** Start a loopback HTTP server whose answer per path is set (and changed) by the test. */
export async function startScriptedServer(): Promise<ScriptedServer> {
  const scripts = new Map<string, ScriptedResponse>()
  const received: string[] = []
  const sockets = new Set<Socket>()

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
    received.push(path)
    req.resume()
    const script = scripts.get(path)
    if (!script) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}')
      return
    }
    if ('json' in script) {
      const body = JSON.stringify(script.json)
      res.writeHead(script.status ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...script.headers }).end(body)
    } else if ('body' in script) {
      res
        .writeHead(script.status ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(script.body), ...script.headers })
        .end(script.body)
    } else if ('chunkedBytes' in script) {
      res.writeHead(200, { 'content-type': 'application/json' }) // no content-length: chunked
      const chunk = 'x'.repeat(1024)
      res.write('{"keys":[],"padding":"')
      let sent = 0
      const pump = (): void => {
        while (sent < script.chunkedBytes) {
          sent += chunk.length
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
        res.end('"}')
      }
      res.on('error', () => {})
      pump()
    } else if ('resetMidBody' in script || 'hangMidBody' in script) {
      const body = JSON.stringify('resetMidBody' in script ? script.resetMidBody : script.hangMidBody)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.write(body.slice(0, Math.floor(body.length / 2)), () => {
        if ('resetMidBody' in script) setTimeout(() => req.socket.resetAndDestroy(), 20)
      })
    } else if ('reset' in script) {
      req.socket.resetAndDestroy()
    }
    // { hang: true }: never answered; the socket is destroyed on close().
  }

  const server = createServer(handler)
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  let closing: Promise<void> | undefined
  return {
    origin,
    url: (path) => `${origin}${path}`,
    script(path, response) {
      if (response === undefined) scripts.delete(path)
      else scripts.set(path, response)
    },
    requestCount: (path) => (path === undefined ? received.length : received.filter((p) => p === path).length),
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
      return closing
    },
  }
}

/** A logger that keeps every warning. */
export interface CapturingLogger extends Logger {
  readonly warnings: Array<{ message: string; details: Record<string, unknown> | undefined }>
}

export function capturingLogger(): CapturingLogger {
  const warnings: CapturingLogger['warnings'] = []
  return {
    warnings,
    warn(message, details) {
      warnings.push({ message, details })
    },
  }
}

/** A `fetch` that records each call (URL and the `now()` it was made at), then forwards it. */
export interface RecordingFetch {
  fetch: typeof globalThis.fetch
  readonly calls: Array<{ url: string; at: number }>
}

export function recordingFetch(now: () => number = Date.now): RecordingFetch {
  const calls: RecordingFetch['calls'] = []
  return {
    calls,
    fetch: (input, init) => {
      calls.push({ url: String(input), at: now() })
      return globalThis.fetch(input, init)
    },
  }
}

/** A minimal plain-HTTP request for `guard.authenticate` without a server. */
export function bareRequest(authorization: string, path = '/whoami'): AuthRequest {
  return { method: 'GET', url: path, headers: { host: 'orders.example.org', authorization }, socket: null }
}

/** A token whose header names `kid` (and whose signature is junk): refused before any signature check. */
export function tokenWithKid(issuer: string, audience: string, kid: string, alg = 'ES256'): string {
  const segment = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  return `${segment({ alg, typ: 'at+jwt', kid })}.${segment({ iss: issuer, aud: audience, sub: 'svc-a', client_id: 'svc-a', iat: now, exp: now + 300 })}.${Buffer.alloc(64, 7).toString('base64url')}`
}

/** Resolve with the outcome of `work` and how long it took, in ms of real time. */
export async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now()
  const value = await work()
  return { value, ms: performance.now() - started }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Poll `condition` every 10 ms until it holds (fails the test after `timeoutMs`). */
export async function waitUntil(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) expect.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

let gc: (() => void) | undefined
/**
 * Force a full garbage collection after each of `delaysMs` (from now); the returned function
 * cancels those not run yet. Faults that depend on what the collector frees (an abort signal that
 * no longer reaches a response body) otherwise show up under load only; this makes them
 * deterministic.
 */
export function collectGarbageAfter(...delaysMs: number[]): () => void {
  if (!gc) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  const collect = gc
  const timers = delaysMs.map((ms) => setTimeout(() => collect(), ms))
  return () => timers.forEach((timer) => clearTimeout(timer))
}

/**
 * A keep-alive client for floods: up to `maxSockets` connections per app (HTTPS, trusting
 * `trust`, or plain HTTP for apps served with `protocol: 'http'`), reused, so hundreds of requests
 * cost a few handshakes. (`client.ts`'s `call` opens one TLS connection per request on purpose,
 * for certificate scenarios.) Answers in the `CallResult` shape the expectations take.
 */
export interface FloodClient {
  /** GET `url`, with `authorization` when given. */
  get(url: string, authorization?: string): Promise<CallResult>
  close(): void
}

const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i

export function floodClient(trust: string, maxSockets = 50): FloodClient {
  const https = new HttpsAgent({ keepAlive: true, maxSockets, ca: [trust] })
  const http = new HttpAgent({ keepAlive: true, maxSockets })
  return {
    get: (url, authorization) =>
      new Promise((resolve, reject) => {
        const headers = authorization === undefined ? {} : { authorization }
        const onResponse = (res: IncomingMessage): void => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('error', reject)
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            const body: unknown = JSON_TYPE.test(res.headers['content-type'] ?? '') && text.length > 0 ? JSON.parse(text) : text
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text })
          })
        }
        const req = url.startsWith('https:')
          ? httpsRequest(url, { agent: https, ca: [trust], headers }, onResponse)
          : httpRequest(url, { agent: http, headers }, onResponse)
        req.on('error', reject)
        req.end()
      }),
    close: () => {
      https.destroy()
      http.destroy()
    },
  }
}

/** Open `count` keep-alive connections now (requests without credentials: 401, no key fetch), so a later burst costs no handshakes. */
export async function warmUp(client: FloodClient, url: string, count: number): Promise<void> {
  const answers = await Promise.all(Array.from({ length: count }, () => client.get(url)))
  for (const res of answers) expect(res.status).toBe(401)
}

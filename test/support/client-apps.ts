/**
 * Helpers for the end-to-end tests of `@callsign/client`: a Callsign-protected HTTPS app per
 * adapter (Express, Fastify, Koa) whose one route runs an async handler with the verified auth
 * context (to call the next service), a `fetch` trusting the test CA (for Callsign's `fetch`
 * option), and a workload identity written to PEM files that a test can rotate in place.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import { fastify } from 'fastify'
import Koa from 'koa'
import { Agent, fetch as undiciFetch } from 'undici'
import type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
import * as expressAdapter from '@callsign/express'
import fastifyCallsign, * as fastifyAdapter from '@callsign/fastify'
import * as koaAdapter from '@callsign/koa'
import { closer, listen, type ServerTls } from './adapters.js'

export type ChainAdapterName = 'express' | 'fastify' | 'koa'
export const CHAIN_ADAPTERS: readonly ChainAdapterName[] = ['express', 'fastify', 'koa']

/** What the route answers: the handler's result as JSON, or `{ error }` with status 502 when it threw. */
export type AuthHandler = (auth: AuthContext, request: { method: string; path: string }) => Promise<unknown>

export interface HandlerApp {
  /** `https://127.0.0.1:<port>` */
  url: string
  close(): Promise<void>
}

/** The failure of a handler as JSON (name, code, message), so a test sees why a hop failed. */
const failure = (error: unknown) => ({
  error: { name: (error as Error)?.name, code: (error as { code?: unknown })?.code, message: (error as Error)?.message },
})

type Listener = (req: IncomingMessage, res: ServerResponse) => void

/**
 * A Callsign-protected app of `adapter`: every GET/POST path runs `requireAuth(rule)`, then
 * `handler(auth)`. The server listens first, so `options(url)` can name the app's own URL
 * (as its audience).
 */
export async function startHandlerApp(
  adapter: ChainAdapterName,
  tls: ServerTls,
  options: (url: string) => CallsignOptions,
  handler: AuthHandler,
  rule: AuthRule = {},
): Promise<HandlerApp> {
  let listener: Listener = (_req, res) => res.writeHead(503).end()
  const server = createServer({ key: tls.key, cert: tls.cert, ca: [tls.ca], requestCert: true, rejectUnauthorized: false }, (req, res) => listener(req, res))
  const url = await listen(server)
  const closeServer = closer(server)
  const answer = async (auth: AuthContext, method: string, path: string): Promise<{ status: number; body: unknown }> => {
    try {
      return { status: 200, body: await handler(auth, { method, path }) }
    } catch (error) {
      return { status: 502, body: failure(error) }
    }
  }
  if (adapter === 'express') {
    const app = express()
    app.use(expressAdapter.callsign(options(url)))
    app.all(/.*/, expressAdapter.requireAuth(rule), (req, res, next) => {
      answer(req.auth!, req.method, req.path).then(({ status, body }) => res.status(status).json(body), next)
    })
    listener = app
    return { url, close: closeServer }
  }
  if (adapter === 'fastify') {
    const app = fastify({ serverFactory: (handle) => ((listener = handle), server) })
    await app.register(fastifyCallsign, options(url))
    app.route({
      method: ['GET', 'POST'],
      url: '/*',
      preHandler: fastifyAdapter.requireAuth(rule),
      handler: async (request, reply) => {
        const { status, body } = await answer(request.auth!, request.method, request.url.split('?', 1)[0]!)
        return reply.status(status).send(body)
      },
    })
    await app.ready()
    return {
      url,
      close: async () => {
        await closeServer()
        await app.close().catch(() => {})
      },
    }
  }
  const app = new Koa()
  app.silent = true
  app.use(koaAdapter.callsign(options(url)))
  app.use(koaAdapter.requireAuth(rule))
  app.use(async (ctx) => {
    const { status, body } = await answer(ctx.state.auth as AuthContext, ctx.method, ctx.path)
    ctx.status = status
    ctx.body = body
  })
  listener = app.callback()
  return { url, close: closeServer }
}

/** A `fetch` that trusts `caPem` (for Callsign's `fetch` option against an https issuer of the test CA). */
export function fetchTrusting(caPem: string): typeof globalThis.fetch & { close(): Promise<void> } {
  const agent = new Agent({ connect: { ca: caPem } })
  const send = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = input instanceof Request ? input.url : String(input)
    const res = await undiciFetch(url, { ...(init as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1])
    const body = await res.arrayBuffer()
    return new Response(res.status === 204 || res.status === 304 ? null : body, { status: res.status, headers: new Headers([...res.headers]) })
  }
  return Object.assign(send as typeof globalThis.fetch, { close: () => agent.close() })
}

/** A workload identity as PEM files (`identity` option of createClient), replaced in place by `rotate`. */
export interface IdentityFiles {
  identity: { cert: { path: string }; key: { path: string }; ca: { path: string } }
  /** Write the new pair to the same paths (each file replaced atomically). */
  rotate(next: { certPem: string; keyPem: string }): Promise<void>
  remove(): Promise<void>
}

export async function writeIdentityFiles(pair: { certPem: string; keyPem: string }, caPem: string): Promise<IdentityFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'callsign-client-'))
  const paths = { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), ca: join(dir, 'ca.crt') }
  const put = async (path: string, text: string): Promise<void> => {
    await writeFile(`${path}.next`, text)
    await rename(`${path}.next`, path)
  }
  await Promise.all([put(paths.cert, pair.certPem), put(paths.key, pair.keyPem), put(paths.ca, caPem)])
  return {
    identity: { cert: { path: paths.cert }, key: { path: paths.key }, ca: { path: paths.ca } },
    async rotate(next) {
      await put(paths.key, next.keyPem)
      await put(paths.cert, next.certPem)
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}

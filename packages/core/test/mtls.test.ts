import { createServer as createHttpServer } from 'node:http'
import { createSecureServer } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import { describe, expect, it } from 'vitest'
import type { Logger } from '../src/environment.js'
import { checkServerMtls, resolveMtls } from '../src/mtls.js'

function recording(): Logger & { messages: string[] } {
  const messages: string[] = []
  return { messages, warn: (message) => void messages.push(message) }
}

const quiet: Logger = { warn() {} }
const configFor = (mtls: unknown, logger: Logger) => ({ mtls: resolveMtls(mtls, quiet), logger, now: Date.now })

describe('checkServerMtls (the startup check an adapter runs on its server)', () => {
  it('tells, once, that an https server without requestCert cannot see client certificates', () => {
    const logger = recording()
    const config = configFor('required', logger)
    checkServerMtls(config, createHttpsServer({}))
    checkServerMtls(config, createHttpsServer({}))
    expect(logger.messages).toHaveLength(1)
    expect(logger.messages[0]).toMatch(/does not request client certificates.*requestCert: true/)
  })

  it('tells that a plain HTTP server cannot see client certificates', () => {
    const logger = recording()
    checkServerMtls(configFor('required', logger), createHttpServer())
    expect(logger.messages).toHaveLength(1)
    expect(logger.messages[0]).toMatch(/plain HTTP.*mtls\.forwarded/)
  })

  it('is silent for a server that requests certificates (https or http2), for optional mTLS, behind a proxy, and for objects it does not know', () => {
    const logger = recording()
    checkServerMtls(configFor('required', logger), createHttpsServer({ requestCert: true }))
    checkServerMtls(configFor('required', logger), createSecureServer({ requestCert: true }))
    checkServerMtls(configFor('optional', logger), createHttpsServer({}))
    checkServerMtls(configFor('optional', logger), createHttpServer())
    const forwarded = { trustedProxies: { cidrs: ['127.0.0.1/32'] }, trustProxyAssertions: true }
    checkServerMtls(configFor({ mode: 'required', forwarded }, logger), createHttpServer())
    for (const other of [undefined, null, {}, 'server']) checkServerMtls(configFor('required', logger), other)
    expect(logger.messages).toEqual([])
  })
})

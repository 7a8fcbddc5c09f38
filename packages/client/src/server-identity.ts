/**
 * The server's identity: on each new TLS connection to a service with `spiffeId`, the SPIFFE ID
 * of the certificate the server presented must match the pattern, or the connection is closed
 * before a request is written. The host name is checked by TLS as usual, before this.
 */
import type { X509Certificate } from 'node:crypto'
import { spiffeIdOfCertificate, type CallerPattern } from '@callsign/core'
import { ServerIdentityError } from './errors.js'
import type { ResolvedService } from './service-options.js'

/** The identity a connection's server must prove, per origin. */
export interface ServerIdentityCheck {
  /** The service (its name, for the error) and pattern for `origin`, when one is configured. */
  expectationFor(origin: string): { service: string; pattern: CallerPattern } | undefined
  /** Throws `ServerIdentityError` unless `certificate` carries a SPIFFE ID matching the expectation. */
  check(expectation: { service: string; pattern: CallerPattern }, certificate: X509Certificate | undefined): void
}

/** The checks of `services`, one per origin (`resolveServices` makes services at one origin agree). */
export function createServerIdentityCheck(services: Iterable<ResolvedService>): ServerIdentityCheck {
  const expectations = new Map<string, { service: string; pattern: CallerPattern }>()
  for (const service of services) {
    if (service.spiffeId && !expectations.has(service.origin)) expectations.set(service.origin, { service: service.name, pattern: service.spiffeId })
  }
  return {
    expectationFor: (origin) => expectations.get(origin),
    check(expectation, certificate) {
      const actual = certificate === undefined ? undefined : spiffeIdOfCertificate(certificate)
      if (actual === undefined || !expectation.pattern.matches(actual)) {
        throw new ServerIdentityError({ service: expectation.service, expected: expectation.pattern.source, actual })
      }
    },
  }
}

/** The origin (`https://host[:port]`, default port omitted) of a connection undici opens. */
export function originOfConnection(options: { protocol: string; hostname: string; port: string | number }): string {
  const hostname = options.hostname.includes(':') && !options.hostname.startsWith('[') ? `[${options.hostname}]` : options.hostname
  const port = options.port === '' || options.port === undefined ? '' : `:${options.port}`
  try {
    return new URL(`${options.protocol}//${hostname}${port}`).origin
  } catch {
    return `${options.protocol}//${hostname}${port}`
  }
}

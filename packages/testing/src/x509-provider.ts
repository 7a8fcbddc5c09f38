/**
 * Loads `@peculiar/x509` with the prerequisites it needs in Node.js: a Reflect
 * metadata polyfill (required by its dependency-injection container) and the
 * platform WebCrypto implementation as crypto provider.
 *
 * Import `x509` from this module instead of from `@peculiar/x509` directly so
 * the polyfill is always evaluated first.
 *
 * @internal
 */
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { webcrypto } from 'node:crypto'

x509.cryptoProvider.set(webcrypto)

export { x509 }

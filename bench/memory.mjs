// Memory under a flood: 1,000,000 distinct verified tokens through the verified-token cache and
// 1,000,000 distinct DPoP jtis through the in-memory replay store. Prints the heap before and
// after (after a full GC); both stay within their configured bounds (10,000 tokens, 100,000 jtis
// by default) however long the flood. Run: node --expose-gc bench/memory.mjs
import { createHash } from 'node:crypto'
import { MemoryReplayStore } from '@callsign/core'
import { VerifiedTokenCache } from '../packages/core/dist/access-token.js'

if (typeof globalThis.gc !== 'function') {
  console.error('run with: node --expose-gc bench/memory.mjs')
  process.exit(2)
}
const N = Number(process.argv[2] ?? 1_000_000)
const heapMiB = () => {
  globalThis.gc()
  return process.memoryUsage().heapUsed / 1024 / 1024
}
const row = (what, before, after, size, bound) =>
  console.log(
    `| ${what} | ${N.toLocaleString('en')} | ${before.toFixed(1)} | ${after.toFixed(1)} | ${(after - before).toFixed(1)} | ${size.toLocaleString('en')} | ${bound.toLocaleString('en')} |`,
  )

console.log('| flood | distinct inputs | heap before (MiB) | heap after (MiB) | growth (MiB) | entries kept | bound |')
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')

// A realistic token: ~700 bytes, as an issuer signs them; each one distinct, each used twice.
const payload = 'x'.repeat(600)
const issuer = {
  issuer: 'https://issuer.example',
  audience: ['orders'],
  jwksUri: undefined,
  localKeys: undefined,
  typ: 'at+jwt',
  scopeClaim: 'scope',
  algorithms: new Set(['ES256']),
  maxTokenLifetimeSeconds: undefined,
}
const cache = new VerifiedTokenCache(10_000)
let before = heapMiB()
for (let i = 0; i < N; i++) {
  const token = `eyJhbGciOiJFUzI1NiJ9.${payload}${i}.sig`
  const verified = { claims: { iss: issuer.issuer, exp: 2e9, sub: `svc-${i}` }, issuer, scopes: ['orders:read'], actors: [] }
  // Each token verified twice: the worst case, since a token is admitted on its second verification.
  cache.set(token, verified, Date.now() + 300_000, undefined)
  cache.set(token, verified, Date.now() + 300_000, undefined)
}
row('verified-token cache (default 10,000)', before, heapMiB(), cache.size, 10_000)

const store = new MemoryReplayStore()
before = heapMiB()
for (let i = 0; i < N; i++) store.markUsed(createHash('sha256').update(`jti-${i}`).digest('base64url'), 120)
row('DPoP replay store (default 100,000)', before, heapMiB(), store.size, 100_000)

import { X509Certificate } from 'node:crypto'
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, type JWK } from 'jose'
import { expectedHtu } from './binding.js'
import { authorizeRequest } from './decisions.js'
import { normalizeHtu } from './dpop.js'
import { createCallsign } from './guard.js'
import { AuthError, type AuthCheck, type AuthErrorCode } from './errors.js'
import { refusalDetail } from './explain-step.js'
import { pemCertificateBlocks, verifyForwardedChain } from './forwarded-certificate.js'
import type { CallsignOptions, ResolvedConfig } from './options.js'
import { describeCertificate, type PeerCertificate } from './peer-certificate.js'
import { compileRule, type AuthRule } from './policy.js'
import type { AuthContext } from './principal.js'
import type { AuthRequest } from './request.js'

/** What to explain: a call as the service would see it. */
export interface ExplainInput {
  /** The guard options, exactly as the service passes them. */
  options: CallsignOptions
  /** The access token. */
  token?: string
  /** A DPoP proof; the token is then presented with the `DPoP` scheme. */
  dpopProof?: string
  /** The client certificate (PEM) the caller presents. */
  certificatePem?: string
  /** PEM CA bundle the service pins; without it, the certificate is assumed authorized by TLS. */
  caPem?: string
  /** Default `GET`. */
  method?: string
  /** The URL called. Default `https://localhost/`. */
  url?: string
  /** The route's rule, if any. */
  rule?: AuthRule
}

/**
 * Values a failed comparison compared: public identifiers only (`htu`, `cnf.jkt`,
 * `cnf["x5t#S256"]`, `aud`, `iss`), never signatures, proofs or private material.
 */
export interface ExplainComparison {
  /** What was compared: `htu`, `cnf.jkt`, `cnf["x5t#S256"]`, `aud` or `iss`. */
  field: string
  /** The value the token, proof or certificate presented (`null`: none). */
  presented: unknown
  /** The value the guard expected: the request URL, the proof key's or certificate's thumbprint, the configured audiences or issuers. */
  expected: unknown
}

/** One check, in the order Callsign runs them. */
export interface ExplainStep {
  check: string
  /** `true` passed, `false` failed (the decision), `undefined` not checked (after the failure, or nothing to check). */
  ok: boolean | undefined
  detail: string
  /** On the failed step: the values a failed comparison compared. */
  compared?: ExplainComparison[]
}

/** A step's outcome: `pass`, `fail`, or `not-checked` (not evaluated: after the deciding failure, or nothing to check). */
export type ExplainStatus = 'pass' | 'fail' | 'not-checked'

/** The status of a step, from its `ok`. */
export function stepStatus(step: Pick<ExplainStep, 'ok'>): ExplainStatus {
  return step.ok === true ? 'pass' : step.ok === false ? 'fail' : 'not-checked'
}

/** The display order of the steps. */
const ORDER = [
  'client certificate',
  'credentials',
  'header',
  'issuer',
  'audience',
  'time',
  'signature',
  'issuer keys',
  'binding',
  'caller',
  'user',
  'delegation',
  'rule',
  'claims',
]

/** The order the guard evaluates the steps in: a step after the failed one was not evaluated. */
const EVALUATION = [
  'client certificate',
  'credentials',
  'header',
  'issuer',
  'signature',
  'issuer keys',
  'time',
  'audience',
  'claims',
  'binding',
  'caller',
  'user',
  'delegation',
  'rule',
]

/** Steps every refusal lists, checked or not; the token's own steps are listed when a token is given. */
const ALWAYS = ['client certificate', 'credentials', 'binding', 'caller', 'user', 'delegation', 'rule']
const TOKEN_STEPS = ['header', 'issuer', 'audience', 'time', 'signature']

export interface Explanation {
  allowed: boolean
  status: number
  code?: AuthErrorCode
  reason?: string
  steps: ExplainStep[]
  auth?: AuthContext
}

const describeSeconds = (seconds: number): string => {
  const abs = Math.abs(Math.round(seconds))
  const text = abs >= 86_400 ? `${Math.round(abs / 3600)} h` : abs >= 120 ? `${Math.round(abs / 60)} min` : `${abs} s`
  return seconds >= 0 ? `in ${text}` : `${text} ago`
}

type StepSetter = (check: string, detail: string, ok?: boolean) => void

/** The client certificate step; whether the certificate chains to the given CA. */
function explainCertificate(input: ExplainInput, config: ResolvedConfig, step: StepSetter): { peer?: PeerCertificate; authorized: boolean } {
  if (!input.certificatePem) {
    step('client certificate', `none presented (mtls: ${config.mtls.mode})`)
    return { authorized: true }
  }
  const cert = new X509Certificate(input.certificatePem)
  const peer = describeCertificate(cert)
  let chain = '; CA not given: assumed authorized by TLS'
  let authorized = true
  if (input.caPem) {
    chain = '; chains to the given CA'
    try {
      const anchors = pemCertificateBlocks(input.caPem).map((pem) => new X509Certificate(pem))
      verifyForwardedChain(cert, [], anchors, config.now())
    } catch (error) {
      authorized = false
      chain = `; ${(error as Error).message}`
    }
  }
  const identity = peer.spiffeId ? `SPIFFE ID ${peer.spiffeId}` : `no SPIFFE ID (URIs: ${peer.uris.join(', ') || 'none'})`
  step('client certificate', `${identity}; valid until ${peer.validTo?.toISOString()}; x5t#S256 ${peer.x5tS256}${chain}`)
  return { peer, authorized }
}

/** The token as decoded for display (the guard does the verifying); `undefined` for an opaque token. */
interface DecodedToken {
  header: ReturnType<typeof decodeProtectedHeader>
  claims: ReturnType<typeof decodeJwt>
  issuer: ReturnType<ResolvedConfig['issuers']['get']>
}

function decodeToken(token: string, config: ResolvedConfig): DecodedToken | undefined {
  try {
    const header = decodeProtectedHeader(token)
    const claims = decodeJwt(token)
    return { header, claims, issuer: typeof claims.iss === 'string' ? config.issuers.get(claims.iss) : undefined }
  } catch {
    return undefined
  }
}

/** The token's steps, as decoded: what the token says, and what is expected where the issuer is known. */
function explainToken({ header, claims, issuer }: DecodedToken, config: ResolvedConfig, scheme: string, step: StepSetter): void {
  const alg = String(header.alg)
  const allowed = issuer ? (issuer.algorithms.has(alg) ? ' (allowed)' : ' (NOT allowed)') : ''
  const typ = issuer ? ` (accepted: ${issuer.typ === 'jwt' ? 'at+jwt, JWT or none' : 'at+jwt'})` : ''
  step(
    'header',
    `alg ${alg}${allowed}, kid ${header.kid === undefined ? 'none' : JSON.stringify(header.kid)}, typ ${header.typ === undefined ? 'none' : JSON.stringify(header.typ)}${typ}`,
  )
  step(
    'issuer',
    `iss ${JSON.stringify(claims.iss)}: ${issuer ? 'a configured issuer' : `not configured (configured: ${[...config.issuers.keys()].join(', ')})`}`,
  )
  step('audience', `aud ${JSON.stringify(claims.aud)}${issuer ? `; expected one of ${JSON.stringify(issuer.audience)}` : ''}`)
  const nowSeconds = config.now() / 1000
  const times = [
    typeof claims.exp === 'number' ? `exp ${describeSeconds(claims.exp - nowSeconds)}` : 'exp missing',
    typeof claims.nbf === 'number' ? `nbf ${describeSeconds(claims.nbf - nowSeconds)}` : undefined,
    typeof claims.iat === 'number' ? `iat ${describeSeconds(claims.iat - nowSeconds)}` : undefined,
    `clock tolerance ${config.clockToleranceSeconds} s`,
    config.maxTokenAgeSeconds === undefined ? undefined : `maxTokenAge ${config.maxTokenAgeSeconds} s`,
  ].filter(Boolean)
  step('time', times.join('; '))
  step('signature', `key ${header.kid === undefined ? 'without kid' : `kid ${JSON.stringify(header.kid)}`} from the issuer's JWKS`)
  const cnf = claims.cnf as Record<string, unknown> | undefined
  step(
    'binding',
    cnf
      ? `cnf ${Object.keys(cnf).join(', ')}; presented as ${scheme}`
      : `not sender-constrained; presented as ${scheme} (senderConstraint: ${config.senderConstraint})`,
  )
  const act = claims.act as { sub?: unknown } | undefined
  step('delegation', act ? `act chain present (nearest actor ${JSON.stringify(act.sub)})` : 'no act claim')
}

/** The request the service would see for the described call. */
function buildRequest(input: ExplainInput, scheme: string, authorized: boolean): AuthRequest {
  const url = new URL(input.url ?? 'https://localhost/')
  const headers: Record<string, string> = { host: url.host }
  if (input.token) headers.authorization = `${scheme} ${input.token}`
  if (input.dpopProof) headers.dpop = input.dpopProof
  const encrypted = url.protocol === 'https:'
  const certificatePem = input.certificatePem
  const socket = certificatePem
    ? {
        encrypted,
        authorized,
        authorizationError: authorized ? null : 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        getPeerX509Certificate: () => new X509Certificate(certificatePem),
      }
    : { encrypted, authorized: false, getPeerX509Certificate: () => undefined }
  return { method: input.method ?? 'GET', url: url.pathname + url.search, headers, socket }
}

/** What a comparison needs besides the failed check. */
interface ComparisonInput {
  input: ExplainInput
  config: ResolvedConfig
  request: AuthRequest
  token: DecodedToken | undefined
  peer: PeerCertificate | undefined
}

/** The compared values of the failed check, where a comparison failed; public identifiers only. */
async function comparisons(check: AuthCheck, { input, config, request, token, peer }: ComparisonInput): Promise<ExplainComparison[]> {
  if (!token) return []
  const { claims, issuer } = token
  if (check === 'issuer') return [{ field: 'iss', presented: claims.iss ?? null, expected: [...config.issuers.keys()] }]
  if (check === 'audience') return [{ field: 'aud', presented: claims.aud ?? null, expected: issuer?.audience ?? [] }]
  if (check !== 'binding') return []
  const cnf = (claims.cnf ?? {}) as Record<string, unknown>
  const out: ExplainComparison[] = []
  if (cnf['x5t#S256'] !== undefined && cnf['x5t#S256'] !== peer?.x5tS256) {
    out.push({ field: 'cnf["x5t#S256"]', presented: cnf['x5t#S256'], expected: peer?.x5tS256 ?? null })
  }
  if (input.dpopProof) out.push(...(await proofComparisons(input.dpopProof, cnf.jkt, request, config)))
  return out
}

/** A DPoP proof's `htu` against the request URL, and the proof key's thumbprint against `cnf.jkt`. */
async function proofComparisons(proof: string, jkt: unknown, request: AuthRequest, config: ResolvedConfig): Promise<ExplainComparison[]> {
  const out: ExplainComparison[] = []
  try {
    const { htu } = decodeJwt(proof)
    const expected = expectedHtu(request, config)
    if (typeof htu !== 'string' || normalizeHtu(htu) !== expected) out.push({ field: 'htu', presented: htu ?? null, expected })
  } catch {
    // A proof or request target that cannot be read has nothing to compare.
  }
  try {
    const thumbprint = await calculateJwkThumbprint(decodeProtectedHeader(proof).jwk as JWK)
    if (jkt !== thumbprint) out.push({ field: 'cnf.jkt', presented: jkt ?? null, expected: thumbprint })
  } catch {
    // No readable public key in the proof: nothing to compare.
  }
  return out
}

/**
 * Mark the steps around the failed one: those the guard evaluates before it passed; those after
 * it were not evaluated, and say so instead of showing expectations that were never compared.
 */
function settle(steps: Map<string, ExplainStep>, failed: AuthCheck, listed: string[]): void {
  const rank = EVALUATION.indexOf(failed)
  for (const check of listed) if (!steps.has(check)) steps.set(check, { check, ok: undefined, detail: 'not reached' })
  for (const [check, step] of steps) {
    if (check === failed || check === 'issuer keys') continue
    const before = EVALUATION.indexOf(check) < rank
    if (before && step.ok === undefined && step.detail !== OPAQUE) step.ok = true
    if (!before) step.ok = undefined
  }
}

const OPAQUE = 'not a JWS: an opaque token, which only introspection can check'

/**
 * Explain a decision: runs the real guard on the described call and lists every check in order
 * with its outcome: certificate, credentials, header (alg, kid, typ), issuer, audience, time claims
 * with the clock tolerance, signature, binding, caller and its source, user and delegation chain,
 * and the rule. The failed step is the one the refusal names (`AuthError.check`), with the values a
 * failed comparison compared; the steps after it are not checked. Never includes the token's
 * signature, the proof, or private material. It fetches the issuer's keys like the service would.
 */
export async function explain(input: ExplainInput): Promise<Explanation> {
  const logged: string[] = []
  const guard = createCallsign({
    ...input.options,
    logger: { warn: (message, details) => logged.push(typeof details?.reason === 'string' ? `${message}: ${details.reason}` : message) },
    prefetch: false,
  })
  const { config } = guard
  const steps = new Map<string, ExplainStep>()
  const step: StepSetter = (check, detail, ok) => {
    steps.set(check, { check, ok, detail })
  }
  const { peer, authorized } = explainCertificate(input, config, step)
  const scheme = input.dpopProof ? 'DPoP' : 'Bearer'
  step('credentials', input.token ? `Authorization: ${scheme} <token>${input.dpopProof ? ' with a DPoP proof' : ''}` : 'no access token')
  const token = input.token ? decodeToken(input.token, config) : undefined
  if (token) explainToken(token, config, scheme, step)
  else if (input.token) step('header', OPAQUE)

  const request = buildRequest(input, scheme, authorized)
  const result: Explanation = { allowed: false, status: 200, steps: [] }
  try {
    const auth = await decide({ guard, request, input, step, steps })
    if (auth) result.auth = auth
    result.allowed = true
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    const failed = error.check
    const existing = steps.get(failed)
    const compared = await comparisons(failed, { input, config, request, token, peer })
    steps.set(failed, {
      check: failed,
      ok: false,
      detail: `${existing ? `${existing.detail} -> ` : ''}${refusalDetail(error)}`,
      ...(compared.length ? { compared } : {}),
    })
    settle(steps, failed, input.token ? [...ALWAYS, ...TOKEN_STEPS] : ALWAYS)
    Object.assign(result, { status: error.status, code: error.code, reason: error.message })
  }
  if (logged.length) step('issuer keys', logged.join('; '), false)
  result.steps = ORDER.flatMap((check) => (steps.has(check) ? [steps.get(check)!] : []))
  return result
}

/** What {@link decide} runs and where it records the steps that passed. */
interface Decision {
  guard: ReturnType<typeof createCallsign>
  request: AuthRequest
  input: ExplainInput
  step: StepSetter
  steps: Map<string, ExplainStep>
}

/** Run the guard (and the rule) on the request; record what passed. Throws the refusal. */
async function decide({ guard, request, input, step, steps }: Decision): Promise<AuthContext | undefined> {
  const auth = await guard.authenticate(request)
  if (auth) {
    step('caller', `${auth.caller.id} (source: ${auth.caller.source})`, true)
    step('user', auth.user ? `on behalf of ${auth.user.sub}` : 'no user: a service acting for itself', true)
    step('delegation', auth.actors.length ? `actors, nearest first: ${auth.actors.join(' <- ')}` : 'no delegation', true)
    step('binding', `binding ${auth.binding}`, true)
    if (auth.credential === 'certificate')
      step('credentials', `no access token: authenticated by the client certificate alone (certificateGrants: ${auth.scopes.join(' ') || 'no scopes'})`, true)
    for (const check of ['header', 'issuer', 'audience', 'time', 'signature', 'client certificate', 'credentials']) {
      const existing = steps.get(check)
      if (existing && existing.detail !== OPAQUE) existing.ok = true
    }
  }
  if (input.rule) {
    authorizeRequest(request, compileRule(input.rule))
    step('rule', `${JSON.stringify(input.rule)}: allowed`, true)
  } else {
    step('rule', 'no rule given: authentication only')
  }
  return auth
}

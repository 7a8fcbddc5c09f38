import { X509Certificate } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { authorizeRequest } from './decisions.js'
import { createCallsign } from './guard.js'
import { AuthError, type AuthErrorCode } from './errors.js'
import { refusalDetail } from './explain-step.js'
import { pemCertificateBlocks, verifyForwardedChain } from './forwarded-certificate.js'
import type { CallsignOptions } from './options.js'
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

/** One check, in the order Callsign runs them. */
export interface ExplainStep {
  check: string
  /** `true` passed, `false` failed (the decision), `undefined` informational or not reached. */
  ok: boolean | undefined
  detail: string
}

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

/**
 * Explain a decision: runs the real guard on the described call and lists every check in order
 * with its outcome: certificate, credentials, header (alg, kid, typ), issuer, audience, time claims
 * with the clock tolerance, signature, binding, caller and its source, user and delegation chain,
 * and the rule. Never includes the token's signature, the proof, or private material.
 * It fetches the issuer's keys like the service would.
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
  const step = (check: string, detail: string, ok?: boolean): void => {
    steps.set(check, { check, ok, detail })
  }
  const nowSeconds = config.now() / 1000
  const tolerance = config.clockToleranceSeconds

  // Client certificate.
  let peer: PeerCertificate | undefined
  let authorized = true
  let authorizationError: string | undefined
  if (input.certificatePem) {
    const cert = new X509Certificate(input.certificatePem)
    peer = describeCertificate(cert)
    if (input.caPem) {
      try {
        const anchors = pemCertificateBlocks(input.caPem).map((pem) => new X509Certificate(pem))
        verifyForwardedChain(cert, [], anchors, config.now())
      } catch (error) {
        authorized = false
        authorizationError = (error as Error).message
      }
    }
    step(
      'client certificate',
      `${peer.spiffeId ? `SPIFFE ID ${peer.spiffeId}` : `no SPIFFE ID (URIs: ${peer.uris.join(', ') || 'none'})`}; valid until ${peer.validTo?.toISOString()}; x5t#S256 ${peer.x5tS256}${input.caPem ? (authorized ? '; chains to the given CA' : `; ${authorizationError}`) : '; CA not given: assumed authorized by TLS'}`,
    )
  } else {
    step('client certificate', `none presented (mtls: ${config.mtls.mode})`)
  }

  // The token, decoded for display only (the guard does the verifying).
  const scheme = input.dpopProof ? 'DPoP' : 'Bearer'
  step('credentials', input.token ? `Authorization: ${scheme} <token>${input.dpopProof ? ' with a DPoP proof' : ''}` : 'no access token')
  if (input.token) {
    try {
      const header = decodeProtectedHeader(input.token)
      const claims = decodeJwt(input.token)
      const issuer = typeof claims.iss === 'string' ? config.issuers.get(claims.iss) : undefined
      step(
        'header',
        `alg ${String(header.alg)}${issuer ? (issuer.algorithms.has(String(header.alg)) ? ' (allowed)' : ' (NOT allowed)') : ''}, kid ${header.kid === undefined ? 'none' : JSON.stringify(header.kid)}, typ ${header.typ === undefined ? 'none' : JSON.stringify(header.typ)} (accepted: ${issuer?.typ === 'jwt' ? 'at+jwt, JWT or none' : 'at+jwt'})`,
      )
      step(
        'issuer',
        `iss ${JSON.stringify(claims.iss)}: ${issuer ? 'a configured issuer' : `not configured (configured: ${[...config.issuers.keys()].join(', ')})`}`,
      )
      step('audience', `aud ${JSON.stringify(claims.aud)}; expected one of ${JSON.stringify(issuer?.audience ?? [])}`)
      const times = [
        typeof claims.exp === 'number' ? `exp ${describeSeconds(claims.exp - nowSeconds)}` : 'exp missing',
        typeof claims.nbf === 'number' ? `nbf ${describeSeconds(claims.nbf - nowSeconds)}` : undefined,
        typeof claims.iat === 'number' ? `iat ${describeSeconds(claims.iat - nowSeconds)}` : undefined,
        `clock tolerance ${tolerance} s`,
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
    } catch {
      step('header', 'the token is not a decodable JWS', false)
    }
  }

  // The real decision.
  const method = input.method ?? 'GET'
  const url = new URL(input.url ?? 'https://localhost/')
  const headers: Record<string, string> = { host: url.host }
  if (input.token) headers.authorization = `${scheme} ${input.token}`
  if (input.dpopProof) headers.dpop = input.dpopProof
  const socket = input.certificatePem
    ? {
        encrypted: url.protocol === 'https:',
        authorized,
        authorizationError: authorized ? null : 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        getPeerX509Certificate: () => new X509Certificate(input.certificatePem!),
      }
    : { encrypted: url.protocol === 'https:', authorized: false, getPeerX509Certificate: () => undefined }
  const request: AuthRequest = { method, url: url.pathname + url.search, headers, socket }
  const result: Explanation = { allowed: false, status: 200, steps: [] }
  try {
    const auth = await guard.authenticate(request)
    if (auth) {
      result.auth = auth
      step('caller', `${auth.caller.id} (source: ${auth.caller.source})`, true)
      step('user', auth.user ? `on behalf of ${auth.user.sub}` : 'no user: a service acting for itself', true)
      step('delegation', auth.actors.length ? `actors, nearest first: ${auth.actors.join(' <- ')}` : 'no delegation', true)
      step('binding', `binding ${auth.binding}`, true)
      if (auth.credential === 'certificate')
        step('credentials', `no access token: authenticated by the client certificate alone (certificateGrants: ${auth.scopes.join(' ') || 'no scopes'})`, true)
      for (const check of ['header', 'issuer', 'audience', 'time', 'signature', 'client certificate', 'credentials']) {
        const existing = steps.get(check)
        if (existing) existing.ok = true
      }
    }
    if (input.rule) {
      authorizeRequest(request, compileRule(input.rule))
      step('rule', `${JSON.stringify(input.rule)}: allowed`, true)
    } else {
      step('rule', 'no rule given: authentication only')
    }
    result.allowed = true
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    const failed = error.check
    const existing = steps.get(failed)
    steps.set(failed, {
      check: failed,
      ok: false,
      detail: `${existing ? `${existing.detail} -> ` : ''}${refusalDetail(error)}`,
    })
    result.status = error.status
    result.code = error.code
    result.reason = error.message
  }
  if (logged.length) step('issuer keys', logged.join('; '), false)
  const order = [
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
  result.steps = order.flatMap((check) => (steps.has(check) ? [steps.get(check)!] : []))
  return result
}

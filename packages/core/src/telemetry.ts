import type { DecisionEvent } from './decision-events.js'

/** Operational counters Callsign reports when `@opentelemetry/api` is installed. */
export interface Telemetry {
  /** A final decision: counter `callsign.decisions` (and replay / nonce counters). */
  decision(event: DecisionEvent): void
  /** Attributes of a decision on the active span, set as soon as they are known (before the span ends). */
  annotate(event: DecisionEvent): void
  /** A JWKS / metadata fetch outcome, or a key served stale, or an unknown kid within the cooldown. */
  keys(outcome: 'ok' | 'failed' | 'stale_served' | 'cooldown', issuer: string): void
  /**
   * Whether a decision event would reach anything now: counters backed by a real meter provider,
   * or an active span. False when `@opentelemetry/api` is installed without an SDK (the no-op
   * meter and no context manager), so a request need not build an event nobody receives.
   */
  active(): boolean
}

interface OtelApi {
  trace: { getActiveSpan(): { setAttributes(attributes: Record<string, string | number | boolean>): unknown } | undefined }
  metrics: { getMeter(name: string, version?: string): OtelMeter }
  /** Since API 1.3; its counters are the API's shared no-op counter. */
  createNoopMeter?: () => OtelMeter
}
interface OtelMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): { add(value: number, attributes?: Record<string, string>): void }
}

/**
 * Load OpenTelemetry if the application has `@opentelemetry/api` (an optional peer dependency):
 * then every decision sets span attributes (`callsign.outcome`, `callsign.code`,
 * `callsign.caller.id`, `callsign.caller.source`, `callsign.binding`, `callsign.issuer`) on the
 * active span and counts `callsign.decisions`, `callsign.jwks.fetches`, `callsign.dpop.replays`
 * and `callsign.dpop.nonce_challenges`. Resolves `undefined` when it is not installed. Never throws.
 */
export async function loadTelemetry(): Promise<Telemetry | undefined> {
  const api = await importOtelApi()
  try {
    return api && createTelemetry(api)
  } catch {
    return undefined
  }
}

async function importOtelApi(): Promise<OtelApi | undefined> {
  try {
    const moduleName = '@opentelemetry/api'
    return (await import(moduleName)) as OtelApi
  } catch {
    return undefined
  }
}

function createTelemetry(api: OtelApi): Telemetry {
  const meter = api.metrics.getMeter('callsign')
  const decisions = meter.createCounter('callsign.decisions', { description: 'Authentication and authorization decisions' })
  const fetches = meter.createCounter('callsign.jwks.fetches', { description: 'Issuer key events: ok, failed, stale_served, cooldown' })
  const replays = meter.createCounter('callsign.dpop.replays', { description: 'DPoP proofs refused as replays' })
  const nonces = meter.createCounter('callsign.dpop.nonce_challenges', { description: 'use_dpop_nonce challenges sent' })
  const counting = !isNoopCounter(api, decisions)
  return {
    active() {
      return counting || api.trace.getActiveSpan() !== undefined
    },
    decision(event) {
      decisions.add(1, decisionAttributes(event))
      if (event.code === 'invalid_dpop_proof' && event.reason === 'DPoP proof has already been used') replays.add(1)
      if (event.code === 'use_dpop_nonce') nonces.add(1)
    },
    annotate(event) {
      const span = api.trace.getActiveSpan()
      if (span) span.setAttributes(spanAttributes(event))
    },
    keys(outcome, issuer) {
      fetches.add(1, { outcome, issuer })
    },
  }
}

/**
 * The metrics API does not proxy: a meter taken before any provider is registered stays the
 * no-op one, whose counters are all one shared no-op instance.
 */
function isNoopCounter(api: OtelApi, counter: unknown): boolean {
  let noopCounter: unknown
  try {
    noopCounter = api.createNoopMeter?.().createCounter('callsign.noop')
  } catch {
    noopCounter = undefined
  }
  return noopCounter !== undefined && counter === noopCounter
}

/** The attributes of `callsign.decisions`. */
function decisionAttributes(event: DecisionEvent): Record<string, string> {
  const attributes: Record<string, string> = { outcome: event.outcome, stage: event.stage, enforced: String(event.enforced) }
  if (event.code) attributes.code = event.code
  if (event.binding) attributes.binding = event.binding
  if (event.caller) attributes.caller_source = event.caller.source
  return attributes
}

/** A decision's attributes on the active span. */
function spanAttributes(event: DecisionEvent): Record<string, string | number | boolean> {
  const attributes: Record<string, string | number | boolean> = { 'callsign.outcome': event.outcome, 'callsign.enforced': event.enforced }
  if (event.code) attributes['callsign.code'] = event.code
  if (event.caller) {
    attributes['callsign.caller.id'] = event.caller.id
    attributes['callsign.caller.source'] = event.caller.source
  }
  if (event.user) attributes['callsign.user'] = event.user
  if (event.binding) attributes['callsign.binding'] = event.binding
  if (event.issuer) attributes['callsign.issuer'] = event.issuer
  return attributes
}

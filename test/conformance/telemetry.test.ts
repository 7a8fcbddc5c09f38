// OpenTelemetry (optional peer dependency): span attributes and counters from a real SDK.
import { context, metrics, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { AggregationTemporality, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCallsign } from '@callsign/core'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const counter = (collected: ResourceMetrics, name: string): Array<{ value: number; attributes: Record<string, unknown> }> =>
  collected.scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric) => metric.dataPoints.map((point) => ({ value: point.value as number, attributes: point.attributes })))

describe('OpenTelemetry', () => {
  let fx: Fixture
  const spans = new InMemorySpanExporter()
  const reader = new TestReader()
  beforeAll(async () => {
    fx = await createFixture()
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
  })
  afterAll(async () => {
    await fx?.close()
  })

  it('sets span attributes and counts decisions, key fetches and replays', async () => {
    const guard = createCallsign({ issuers: issuerOption(fx.main), logger: quiet })
    await new Promise((resolve) => setTimeout(resolve, 50)) // the API is loaded in the background
    const token = await sign(fx.main, { sub: 'alice', act: { sub: ID.frontend }, scope: 'orders:read' })
    const tracer = trace.getTracer('test')
    await tracer.startActiveSpan('GET /orders', async (span) => {
      await guard.authenticate({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${token}` } })
      span.end()
    })
    await tracer.startActiveSpan('GET /orders (bad)', async (span) => {
      await guard.authenticate({ method: 'GET', url: '/orders', headers: { authorization: 'Bearer nope' } }).catch(() => {})
      span.end()
    })
    await new Promise((resolve) => setTimeout(resolve, 20))
    const [ok, bad] = spans.getFinishedSpans()
    expect(ok?.attributes).toMatchObject({
      'callsign.outcome': 'allowed',
      'callsign.caller.id': ID.frontend,
      'callsign.caller.source': 'token',
      'callsign.user': 'alice',
      'callsign.binding': 'bearer',
      'callsign.issuer': fx.main.issuer,
    })
    expect(bad?.attributes).toMatchObject({ 'callsign.outcome': 'refused', 'callsign.code': 'invalid_token' })
    expect(JSON.stringify(ok?.attributes)).not.toContain(token.split('.')[2]!)
    const { resourceMetrics } = await reader.collect()
    const decisions = counter(resourceMetrics, 'callsign.decisions')
    expect(decisions).toEqual(
      expect.arrayContaining([expect.objectContaining({ value: 1, attributes: expect.objectContaining({ outcome: 'refused', code: 'invalid_token' }) })]),
    )
    expect(counter(resourceMetrics, 'callsign.jwks.fetches')).toEqual([
      expect.objectContaining({ value: 1, attributes: { outcome: 'ok', issuer: fx.main.issuer } }),
    ])
  })

  it('stays out of the way with telemetry: false', async () => {
    spans.reset()
    const guard = createCallsign({ issuers: issuerOption(fx.main), logger: quiet, telemetry: false })
    await new Promise((resolve) => setTimeout(resolve, 50))
    const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker })
    await trace.getTracer('test').startActiveSpan('x', async (span) => {
      await guard.authenticate({ method: 'GET', url: '/', headers: { authorization: `Bearer ${token}` } })
      span.end()
    })
    expect(spans.getFinishedSpans()[0]?.attributes).toEqual({})
  })
})

// OpenTelemetry (optional): a span `callsign.client.token` per token request and the counter
// `callsign.client.token_requests`, from a real SDK registered AFTER the token source exists (the
// metrics API does not proxy); cached gets make neither. The authorization server is the scripted
// loopback server of test/support/faults.ts.
import { metrics, trace } from '@opentelemetry/api'
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTokenSource, resolveTokenOptions, type TokenRequest } from '@callsign/client'
import { startScriptedServer, type ScriptedServer } from '../../../test/support/faults.js'

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const ORDERS: TokenRequest = { service: 'orders', resource: 'https://orders.example.org', scopes: ['orders:read'] }

describe('token side: OpenTelemetry', () => {
  let as: ScriptedServer
  beforeAll(async () => {
    as = await startScriptedServer()
    as.script('/.well-known/oauth-authorization-server', { json: { issuer: as.origin, token_endpoint: as.url('/token') } })
    as.script('/token', { json: { access_token: 'opaque-token-value', token_type: 'Bearer', expires_in: 60 } })
  })
  afterAll(() => as.close())

  it('traces and counts token requests, never cached gets, without the token', async () => {
    const tokens = createTokenSource({
      options: resolveTokenOptions({ issuer: as.origin, clientId: 'c', auth: 'client_secret_basic', clientSecret: 's' }),
      identity: undefined,
      dpop: undefined,
      emit: () => {},
    })
    const spans = new InMemorySpanExporter()
    const reader = new TestReader()
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
    try {
      await tokens.get(ORDERS)
      await tokens.get(ORDERS)
      as.script('/token', { json: { error: 'invalid_target' }, status: 400 })
      await tokens.get({ ...ORDERS, resource: 'https://billing.example.org' }).catch(() => {})
      const finished = spans.getFinishedSpans()
      expect(finished.map((span) => [span.name, span.attributes['callsign.grant'], span.status.code])).toEqual([
        ['callsign.client.token', 'client_credentials', 0],
        ['callsign.client.token', 'client_credentials', 2],
      ])
      expect(finished[0]!.attributes).toEqual({ 'callsign.service': 'orders', 'callsign.grant': 'client_credentials', 'callsign.binding': 'bearer' })
      const { resourceMetrics } = await reader.collect()
      const points = resourceMetrics.scopeMetrics
        .flatMap((scope) => scope.metrics)
        .filter((metric) => metric.descriptor.name === 'callsign.client.token_requests')
        .flatMap((metric) => metric.dataPoints.map((point) => ({ value: point.value, outcome: point.attributes.outcome })))
      expect(points).toEqual(
        expect.arrayContaining([
          { value: 1, outcome: 'ok' },
          { value: 1, outcome: 'authorization_server_refused' },
        ]),
      )
      expect(JSON.stringify(finished.map((span) => span.attributes))).not.toContain('opaque-token-value')
    } finally {
      await tokens.close()
      trace.disable()
      metrics.disable()
    }
  })
})

// Compile-only copies of the Redis snippets in README.md and packages/redis/README.md (checked by
// `pnpm typecheck` under --strict, never executed): what the docs show must compile as shown.
import express from 'express'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { callsign, type CallsignOptions } from '@callsign/express'
import { RedisReplayStore } from '@callsign/redis'

declare const app: express.Express
declare const options: CallsignOptions
declare const logger: { warn(details: object, message: string): void }

export async function withIoredis(): Promise<void> {
  const client = new Redis(process.env.REDIS_URL!, {
    lazyConnect: true,
    enableOfflineQueue: false, // while disconnected, a command fails at once instead of waiting
    maxRetriesPerRequest: 0, // a command in flight when the connection drops fails at once
    connectTimeout: 1_000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000), // keep reconnecting in the background
  })
  client.on('error', (error) => logger.warn({ err: error }, 'redis')) // commands report failures themselves
  await client.connect()

  app.use(callsign({ ...options, dpop: { replayStore: new RedisReplayStore({ client }) } }))
}

export async function withNodeRedis(): Promise<void> {
  const client = createClient({
    url: process.env.REDIS_URL!,
    disableOfflineQueue: true, // while disconnected, a command fails at once instead of waiting
    socket: {
      connectTimeout: 1_000,
      reconnectStrategy: (retries: number) => Math.min(retries * 100, 2_000), // keep reconnecting in the background
    },
  })
  client.on('error', (error) => logger.warn({ err: error }, 'redis')) // required: node-redis throws on an unhandled 'error'
  await client.connect()

  app.use(callsign({ ...options, dpop: { replayStore: new RedisReplayStore({ client }) } }))
}

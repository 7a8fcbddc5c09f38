/**
 * Redis helpers for test/faults: a fail-fast ioredis client (the settings the README recommends)
 * and a `redis-server` WITH persistence (AOF, fsync on every write), to show what closes the gap a
 * restarted in-memory Redis leaves. The plain throwaway server is `startRedisServer()` in
 * packages/redis/test/redis-server.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { assertRedisServerInstalled, freePort, rawCommand, type RedisServer } from '../../packages/redis/test/redis-server.js'

/**
 * A connected ioredis client that fails fast while Redis is down (no offline queue, no retries
 * per request) and reconnects every 50 ms in the background. Disconnect it when done.
 */
export async function failFastRedis(port: number): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => 50 })
  client.on('error', () => {}) // connection errors surface as rejected commands
  await client.connect()
  return client
}

/**
 * A `redis-server` with `appendonly yes` and `appendfsync always`: every write is on disk before
 * Redis answers it, so a SIGKILL and a restart (same directory, same port) keep every key.
 */
export async function startPersistentRedisServer(): Promise<RedisServer> {
  assertRedisServerInstalled()
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'callsign-redis-aof-'))
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    if (child) throw new Error('redis-server is already running')
    const args = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--loglevel', 'warning']
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    let output = ''
    proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    proc.once('exit', () => {
      if (child === proc) child = undefined
    })
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        if ((await rawCommand(port, 'PING')) === '+PONG') return
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`persistent redis-server on port ${port} did not start:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      child = undefined
      return
    }
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill(signal)
    await gone
    child = undefined
  }

  await start()
  return {
    port,
    start,
    kill: () => kill('SIGKILL'),
    stop: async () => {
      await kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * @callsign/redis: a DPoP replay store shared by every replica, on Redis (ioredis or node-redis).
 *
 * @packageDocumentation
 */
export {
  RedisReplayStore,
  RedisReplayStoreTimeoutError,
  DEFAULT_KEY_PREFIX,
  DEFAULT_TIMEOUT_MS,
  type RedisReplayStoreOptions,
  type RedisReplayStoreClient,
  type IoRedisLikeClient,
  type NodeRedisLikeClient,
} from './redis-replay-store.js'

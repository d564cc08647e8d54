package limitcount

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sluice-gw/sluice/internal/plugin"
)

// keyVersion is APISIX's KEY_VERSION: it is embedded in fixed-window keys
// so counters of another storage format never share a key.
const keyVersion = "v1"

// redisKeyPrefix starts every key limit-count writes to Redis
// ("plugin-" .. plugin_name in APISIX).
const redisKeyPrefix = "plugin-" + Name

// logEvery bounds how often one Redis backend logs failures: an outage
// hits every request, and one line per request would flood the log.
const logEvery = time.Second

// fixedScript counts cost in the key's fixed window and returns the new
// count with the window's remaining time in ms. The first request of a
// window (no TTL) opens it with EX = time_window, as APISIX's commit script
// does; rejected requests are counted too.
// KEYS[1] = counter, ARGV[1] = time_window (s), ARGV[2] = cost.
var fixedScript = redis.NewScript(`
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
    redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[1])
    return {tonumber(ARGV[2]), tonumber(ARGV[1]) * 1000}
end
return {redis.call('incrby', KEYS[1], ARGV[2]), ttl}
`)

// slidingScript decides and counts one request of a sliding window in one
// atomic step (APISIX's check_and_incr). The previous window's count is
// read in the same script rather than by a separate GET, so the request
// costs one round trip; both keys carry the same hash tag, so they live in
// one cluster slot. Only accepted requests are counted. Returns
// {accepted, count, last}.
// KEYS[1] = current window, KEYS[2] = previous window; ARGV = cost, limit,
// window size (s), remaining time (s), expiry (s).
var slidingScript = redis.NewScript(`
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window_size = tonumber(ARGV[3])
local remaining_time = tonumber(ARGV[4])
local last = tonumber(redis.call('get', KEYS[2]) or 0)
if last > limit then
    last = limit
end
local cur_ttl = redis.call('pttl', KEYS[1])
local cur = 0
if cur_ttl >= 0 then
    cur = tonumber(redis.call('get', KEYS[1]) or 0)
end
local estimated = last / window_size * remaining_time + cur
if cur >= limit or estimated >= limit then
    return {0, cur, last}
end
local new
if cur_ttl < 0 then
    redis.call('set', KEYS[1], cost, 'EX', ARGV[5])
    new = cost
else
    new = redis.call('incrby', KEYS[1], cost)
end
return {1, new, last}
`)

// RedisConfig holds the redis and redis-cluster policy fields
// (apisix/utils/redis-schema.lua), with APISIX's defaults.
type RedisConfig struct {
	RedisHost             string   `json:"redis_host,omitempty"`
	RedisPort             int      `json:"redis_port"`
	RedisUsername         string   `json:"redis_username,omitempty"`
	RedisPassword         string   `json:"redis_password,omitempty"`
	RedisDatabase         int      `json:"redis_database"`
	RedisTimeout          int      `json:"redis_timeout"`
	RedisSSL              bool     `json:"redis_ssl"`
	RedisSSLVerify        bool     `json:"redis_ssl_verify"`
	RedisKeepaliveTimeout int      `json:"redis_keepalive_timeout"`
	RedisKeepalivePool    int      `json:"redis_keepalive_pool"`
	RedisClusterNodes     []string `json:"redis_cluster_nodes,omitempty"`
	RedisClusterName      string   `json:"redis_cluster_name,omitempty"`
	RedisClusterSSL       bool     `json:"redis_cluster_ssl"`
	RedisClusterSSLVerify bool     `json:"redis_cluster_ssl_verify"`
}

// defaultRedis are the schema defaults of the redis fields.
var defaultRedis = RedisConfig{RedisPort: 6379, RedisTimeout: 1000, RedisKeepaliveTimeout: 10000, RedisKeepalivePool: 100}

// redisBackend is one Redis connection config's client, shared by every
// instance with that config through plugin.Shared, so snapshot swaps and
// routes with the same Redis reuse one connection pool.
type redisBackend struct {
	once    sync.Once
	client  redis.UniversalClient
	err     error // the config cannot make a client (bad cluster node address)
	timeout time.Duration

	// lastLog and dropped rate-limit failure logging across requests.
	lastLog atomic.Int64
	dropped atomic.Int64
}

// connKey identifies a connection config; the password enters only as a
// digest, so no secret sits in the shared map's keys.
func connKey(policy string, c *RedisConfig) string {
	cp := *c
	sum := sha256.Sum256([]byte(c.RedisPassword))
	cp.RedisPassword = hex.EncodeToString(sum[:8])
	b, _ := json.Marshal(struct {
		Policy string
		Conf   RedisConfig
	}{policy, cp})
	return Name + "\x00redis\x00" + string(b)
}

// redisBackendFor returns the shared backend of c, making its client on
// first use. The holder is stored empty and filled once, so concurrent
// builds never make (and leak) a second client.
func redisBackendFor(shared *plugin.Shared, policy string, c *RedisConfig) *redisBackend {
	quietRedisLogger.Do(func() { redis.SetLogger(debugLogger{}) })
	b := shared.LoadOrStore(connKey(policy, c), func() any { return &redisBackend{} }).(*redisBackend)
	b.once.Do(func() {
		b.timeout = time.Duration(c.RedisTimeout) * time.Millisecond
		b.client, b.err = newRedisClient(policy, c)
	})
	return b
}

// errBackendClosed is the error of a backend closed before its first use.
var errBackendClosed = errors.New("redis backend closed")

// Close closes the backend's client and its connections. plugin.Shared
// calls it once no route of the current snapshot uses this connection
// config any more (after a grace period), so config changes do not leak
// clients.
func (b *redisBackend) Close() error {
	b.once.Do(func() { b.err = errBackendClosed })
	if b.client == nil {
		return nil
	}
	return b.client.Close()
}

// newRedisClient builds a go-redis client whose every wait is bounded by
// redis_timeout: dialing, reading, writing and waiting for a pooled
// connection. There are no retries and no repeated dials: each would add a
// backoff to every request while Redis is down, and the request context's
// deadline (also redis_timeout) bounds the whole call anyway. Broken pooled
// connections are dropped by go-redis's health check before reuse, so a
// restarted Redis is picked up without retries.
func newRedisClient(policy string, c *RedisConfig) (redis.UniversalClient, error) {
	timeout := time.Duration(c.RedisTimeout) * time.Millisecond
	idle := time.Duration(c.RedisKeepaliveTimeout) * time.Millisecond
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if policy == "redis-cluster" {
		addrs := make([]string, 0, len(c.RedisClusterNodes))
		for _, n := range c.RedisClusterNodes {
			host, port, err := net.SplitHostPort(n)
			if err != nil || host == "" {
				return nil, fmt.Errorf("failed to parse address: %s err: %w", n, err)
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				return nil, fmt.Errorf("failed to parse address: %s err: invalid port", n)
			}
			addrs = append(addrs, n)
		}
		var tc *tls.Config
		if c.RedisClusterSSL {
			tc = &tls.Config{InsecureSkipVerify: !c.RedisClusterSSLVerify} //nolint:gosec // redis_cluster_ssl_verify defaults to false, as in APISIX
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                    addrs,
			Password:                 c.RedisPassword,
			Protocol:                 2,
			DialTimeout:              timeout,
			ReadTimeout:              timeout,
			WriteTimeout:             timeout,
			PoolTimeout:              timeout,
			ContextTimeoutEnabled:    true,
			MaxRetries:               -1,
			DialerRetries:            1,
			MaxIdleConns:             c.RedisKeepalivePool,
			ConnMaxIdleTime:          idle,
			TLSConfig:                tc,
			DisableIdentity:          true,
			MaintNotificationsConfig: noMaint,
		}), nil
	}
	var tc *tls.Config
	if c.RedisSSL {
		tc = &tls.Config{ServerName: c.RedisHost, InsecureSkipVerify: !c.RedisSSLVerify} //nolint:gosec // redis_ssl_verify defaults to false, as in APISIX
	}
	return redis.NewClient(&redis.Options{
		Addr:                     net.JoinHostPort(c.RedisHost, strconv.Itoa(c.RedisPort)),
		Username:                 c.RedisUsername,
		Password:                 c.RedisPassword,
		DB:                       c.RedisDatabase,
		Protocol:                 2,
		DialTimeout:              timeout,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		PoolTimeout:              timeout,
		ContextTimeoutEnabled:    true,
		MaxRetries:               -1,
		DialerRetries:            1,
		MaxIdleConns:             c.RedisKeepalivePool,
		ConnMaxIdleTime:          idle,
		TLSConfig:                tc,
		DisableIdentity:          true,
		MaintNotificationsConfig: noMaint,
	}), nil
}

// quietRedisLogger replaces go-redis's process-wide logger once. Its
// default prints every failed dial to stderr, one line per request during
// an outage; the plugin reports failures itself, rate-limited.
var quietRedisLogger sync.Once

// debugLogger sends go-redis's messages to slog's default logger at debug
// level.
type debugLogger struct{}

// Printf implements go-redis's internal.Logging.
func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// errNoClient is returned when the backend has no client.
var errNoClient = errors.New("redis client not initialized")

// context bounds one Redis call by redis_timeout and by the client's
// request context.
func (b *redisBackend) context(r *plugin.Request) (context.Context, context.CancelFunc) {
	parent := context.Background()
	if r.Ctx != nil && r.Context != nil {
		parent = r.Context
	}
	return context.WithTimeout(parent, b.timeout)
}

// incomingFixed counts one request in key's fixed window in Redis.
func (b *redisBackend) incomingFixed(r *plugin.Request, key string, limit, tw int64) (remaining int64, reset float64, ok bool, err error) {
	if b.client == nil {
		return 0, 0, false, errNoClient
	}
	ctx, cancel := b.context(r)
	defer cancel()
	res, err := fixedScript.Run(ctx, b.client, []string{key}, tw, 1).Int64Slice()
	if err != nil {
		return 0, 0, false, err
	}
	if len(res) != 2 {
		return 0, 0, false, fmt.Errorf("malformed redis response: %v", res)
	}
	remaining = limit - res[0]
	reset = float64(res[1]) / 1000
	if remaining < 0 {
		return 0, reset, false, nil
	}
	return remaining, reset, true, nil
}

// incomingSliding runs APISIX's sliding window on Redis: the previous
// window weighted by its overlap plus the current window; keys are
// "<prefix>:{<key>}.<window id>.counter" and expire after two windows.
func (b *redisBackend) incomingSliding(r *plugin.Request, key string, limit, tw, now int64) (remaining int64, reset float64, ok bool, err error) {
	if b.client == nil {
		return 0, 0, false, errNoClient
	}
	wsize := tw * int64(time.Second)
	wid := now / wsize
	remTime := float64(wsize-now%wsize) / float64(time.Second)
	cur := redisKeyPrefix + ":{" + key + "}." + strconv.FormatInt(wid, 10) + ".counter"
	last := redisKeyPrefix + ":{" + key + "}." + strconv.FormatInt(wid-1, 10) + ".counter"
	ctx, cancel := b.context(r)
	defer cancel()
	res, err := slidingScript.Run(ctx, b.client, []string{cur, last},
		1, limit, tw, strconv.FormatFloat(remTime, 'f', 6, 64), 2*tw).Int64Slice()
	if err != nil {
		return 0, 0, false, err
	}
	if len(res) != 3 {
		return 0, 0, false, fmt.Errorf("malformed redis response: %v", res)
	}
	accepted, count, lastCount := res[0], res[1], res[2]
	lastRate := float64(lastCount) / float64(tw)
	if accepted == 0 {
		if count >= limit {
			return 0, ceil2(remTime), false, nil
		}
		delay := remTime
		if lastRate != 0 {
			delay = math.Max(0, remTime-float64(limit-count)/lastRate)
		}
		return 0, ceil2(delay), false, nil
	}
	return int64(math.Floor(float64(limit-count) - lastRate*remTime)), ceil2(remTime), true, nil
}

// logFailure logs a Redis failure at most once per logEvery per backend,
// with how many were suppressed since the last line.
func (b *redisBackend) logFailure(r *plugin.Request, msg string, degraded bool, err error) {
	if r.Env == nil || r.Env.Logger == nil {
		return
	}
	now := time.Now().UnixNano()
	last := b.lastLog.Load()
	if now-last < int64(logEvery) || !b.lastLog.CompareAndSwap(last, now) {
		b.dropped.Add(1)
		return
	}
	dropped := b.dropped.Swap(0)
	if degraded {
		r.Env.Logger.Warn(msg, "plugin", Name, "error", err, "allow_degradation", true, "suppressed", dropped)
		return
	}
	r.Env.Logger.Error(msg, "plugin", Name, "error", err, "suppressed", dropped)
}

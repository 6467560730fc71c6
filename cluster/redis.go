package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RedisConfig locates the Redis that the LiveKit nodes share. Field names
// follow the `redis:` section of livekit.yaml so an operator can copy it.
type RedisConfig struct {
	// host:port of a single Redis (LiveKit's `address`).
	Address  string `json:"address,omitempty"`
	Username string `json:"username,omitempty"`
	// Password, usually `{env.REDIS_PASSWORD}`. Never logged.
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`
	UseTLS   bool   `json:"use_tls,omitempty"`

	// Sentinel: the master's name and the sentinels' host:port.
	SentinelMasterName string   `json:"sentinel_master_name,omitempty"`
	SentinelUsername   string   `json:"sentinel_username,omitempty"`
	SentinelPassword   string   `json:"sentinel_password,omitempty"`
	SentinelAddresses  []string `json:"sentinel_addresses,omitempty"`

	// Redis Cluster seed addresses.
	ClusterAddresses []string `json:"cluster_addresses,omitempty"`
}

// Map returns a copy with f applied to every string (the Caddy modules
// resolve their {env.*} placeholders with it).
func (c RedisConfig) Map(f func(string) string) RedisConfig {
	c.Address = f(c.Address)
	c.Username = f(c.Username)
	c.Password = f(c.Password)
	c.SentinelMasterName = f(c.SentinelMasterName)
	c.SentinelUsername = f(c.SentinelUsername)
	c.SentinelPassword = f(c.SentinelPassword)
	c.SentinelAddresses = MapAll(f, c.SentinelAddresses)
	c.ClusterAddresses = MapAll(f, c.ClusterAddresses)
	return c
}

// MapAll applies f to every element of in (nil stays nil).
func MapAll(f func(string) string, in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// Empty reports whether no Redis is named at all.
func (c RedisConfig) Empty() bool {
	return c.Address == "" && len(c.SentinelAddresses) == 0 && len(c.ClusterAddresses) == 0
}

// Validate checks that exactly one kind of Redis is named.
func (c RedisConfig) Validate() error {
	modes := 0
	if c.Address != "" {
		modes++
	}
	if len(c.SentinelAddresses) > 0 {
		modes++
		if c.SentinelMasterName == "" {
			return fmt.Errorf("redis: sentinel_addresses needs sentinel_master_name")
		}
	}
	if len(c.ClusterAddresses) > 0 {
		modes++
	}
	switch {
	case modes == 0:
		return fmt.Errorf("redis: one of address, sentinel_addresses or cluster_addresses is required")
	case modes > 1:
		return fmt.Errorf("redis: address, sentinel_addresses and cluster_addresses are exclusive")
	}
	if c.DB != 0 && len(c.ClusterAddresses) > 0 {
		return fmt.Errorf("redis: db is not supported with cluster_addresses")
	}
	return nil
}

// client builds a go-redis UniversalClient. timeout bounds every dial, read
// and write so that no request ever waits on an unreachable Redis for longer.
func (c RedisConfig) client(timeout time.Duration) redis.UniversalClient {
	opts := &redis.UniversalOptions{
		Username:         c.Username,
		Password:         c.Password,
		DB:               c.DB,
		MasterName:       c.SentinelMasterName,
		SentinelUsername: c.SentinelUsername,
		SentinelPassword: c.SentinelPassword,
		DialTimeout:      timeout,
		ReadTimeout:      timeout,
		WriteTimeout:     timeout,
		PoolTimeout:      timeout,
		// a failed command is retried by our own next refresh, not by go-redis;
		// a refused dial fails at once instead of after five tries
		MaxRetries:    -1,
		DialerRetries: 1,
		// go-redis stops dialling after PoolSize failed dials and then tries
		// once a second; a high cap keeps it dialling at our refresh pace
		// through an outage, so recovery is not delayed by that second
		PoolSize: 1000,
	}
	switch {
	case len(c.SentinelAddresses) > 0:
		opts.Addrs = c.SentinelAddresses
	case len(c.ClusterAddresses) > 0:
		opts.Addrs = c.ClusterAddresses
		opts.IsClusterMode = true
	default:
		opts.Addrs = []string{c.Address}
	}
	if c.UseTLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	for _, a := range opts.Addrs {
		ourAddrs.Store(a, struct{}{})
	}
	return redis.NewUniversalClient(opts)
}

// redisLog takes go-redis' own messages (dial failures, pool notices).
// go-redis has one logger per process, so ours is installed once and
// passes on, as go-redis' default would, every message that does not come
// from one of our clients: another plugin's Redis keeps its own lines. A
// message is ours when it comes with the context of one of our calls, or
// names one of our Redis addresses (go-redis dials in the background, with
// a context of its own). Ours go to Caddy's log at debug level: the cluster
// logs each change of Redis reachability once.
type redisLog struct {
	log      *atomic.Pointer[zap.Logger] // the latest config's
	fallback *log.Logger
}

type ourCall struct{}

// ours marks ctx as one of our Redis calls, for redisLog.
func ours(ctx context.Context) context.Context { return context.WithValue(ctx, ourCall{}, true) }

// ourAddrs holds the addresses of our clients' Redis servers.
var ourAddrs sync.Map // string -> struct{}

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if (ctx == nil || ctx.Value(ourCall{}) == nil) && !namesOurs(msg) {
		_ = l.fallback.Output(2, msg)
		return
	}
	if c := l.log.Load().Check(zapcore.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("message", msg))
	}
}

// namesOurs: msg names one of our addresses as a whole word ("dial tcp
// 10.0.0.5:6379: ..."), not as part of another ("10.0.0.5:63790").
func namesOurs(msg string) bool {
	for _, w := range strings.FieldsFunc(msg, func(r rune) bool { return r == ' ' || r == ',' || r == '[' || r == ']' }) {
		if _, ok := ourAddrs.Load(strings.TrimSuffix(w, ":")); ok {
			return true
		}
	}
	return false
}

var (
	redisLogOnce sync.Once
	redisLogTo   atomic.Pointer[zap.Logger]
)

// scopeRedisLog installs redisLog once and points it at lg (the logger of
// the latest config: a reload may change where logs go).
func scopeRedisLog(lg *zap.Logger) {
	redisLogTo.Store(lg.Named("go-redis"))
	redisLogOnce.Do(func() {
		redis.SetLogger(redisLog{log: &redisLogTo, fallback: log.New(os.Stderr, "redis: ", log.LstdFlags|log.Lshortfile)})
	})
}

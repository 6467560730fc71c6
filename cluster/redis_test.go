package cluster

import (
	"bytes"
	"context"
	"log"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// go-redis' lines about our clients go to our log at debug level; those of
// another plugin's clients keep going where go-redis would put them.
func TestRedisLogScopedToOurClients(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	var other bytes.Buffer
	var to atomic.Pointer[zap.Logger]
	to.Store(zap.New(core))
	l := redisLog{log: &to, fallback: log.New(&other, "redis: ", 0)}
	RedisConfig{Address: "10.9.9.9:6390"}.client(0).Close()

	l.Printf(ours(context.Background()), "connection pool: %s", "a call of ours")
	l.Printf(context.Background(), "failed to dial after 1 attempts: dial tcp %s: refused", "10.9.9.9:6390")
	l.Printf(context.Background(), "failed to dial after 1 attempts: dial tcp %s: refused", "10.1.1.1:6379")
	l.Printf(context.Background(), "failed to dial after 1 attempts: dial tcp %s: refused", "10.9.9.9:63900")
	if logs.Len() != 2 {
		t.Errorf("%d lines of ours in our log, want 2", logs.Len())
	}
	if got := other.String(); got != "redis: failed to dial after 1 attempts: dial tcp 10.1.1.1:6379: refused\n"+
		"redis: failed to dial after 1 attempts: dial tcp 10.9.9.9:63900: refused\n" {
		t.Errorf("another client's line went elsewhere: %q", got)
	}
}

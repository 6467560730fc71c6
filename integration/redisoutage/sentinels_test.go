package redisoutage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
	"github.com/redis/go-redis/v9"
)

// sentinelSet is a master, one replica and three sentinels that monitor the
// master as "mymaster" with quorum 2.
type sentinelSet struct {
	master    *harness.Redis
	replica   *harness.Redis
	sentinels []*harness.Redis
}

const masterName = "mymaster"

// startSentinels starts the set and waits until every sentinel knows the
// replica (in sync) and the two other sentinels, so that a failover can
// happen as soon as the master dies.
func startSentinels(t *testing.T) *sentinelSet {
	t.Helper()
	s := &sentinelSet{master: harness.StartRedisWith(t, harness.RedisOptions{Name: "master"})}
	s.replica = harness.StartRedisWith(t, harness.RedisOptions{Name: "replica",
		Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.Port())}})
	for i := range 3 {
		conf := filepath.Join(t.TempDir(), "sentinel.conf") // sentinels rewrite their config file
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 3000\n"+
			"sentinel parallel-syncs %[1]s 1\n", masterName, s.master.Port())
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		s.sentinels = append(s.sentinels, harness.StartRedisWith(t, harness.RedisOptions{Name: fmt.Sprintf("sentinel%d", i+1), Sentinel: conf}))
	}
	err := harness.PollErr(30*time.Second, 200*time.Millisecond, func() error {
		var missing []string
		for i, sn := range s.sentinels {
			if why := sentinelReady(sn); why != "" {
				missing = append(missing, fmt.Sprintf("sentinel%d: %s", i+1, why))
			}
		}
		if len(missing) > 0 {
			return errors.New(strings.Join(missing, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sentinels not ready: %v", err)
	}
	return s
}

// client is a new RESP2 client of r that does not retry; the caller closes it.
func client(r *harness.Redis) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr(), Protocol: 2, ContextTimeoutEnabled: true, MaxRetries: -1})
}

// sentinelReady says what sentinel sn does not know yet ("" when ready).
func sentinelReady(sn *harness.Redis) string {
	rc := client(sn)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	replicas, err := rc.Do(ctx, "SENTINEL", "REPLICAS", masterName).Slice()
	if err != nil {
		return err.Error()
	}
	if len(replicas) != 1 || !strings.Contains(fmt.Sprint(replicas), "master-link-status ok") {
		return fmt.Sprintf("replicas %v", replicas)
	}
	others, err := rc.Do(ctx, "SENTINEL", "SENTINELS", masterName).Slice()
	if err != nil {
		return err.Error()
	}
	if len(others) != 2 {
		return fmt.Sprintf("%d other sentinels", len(others))
	}
	return ""
}

// addrs are the sentinels' addresses.
func (s *sentinelSet) addrs() []string {
	var out []string
	for _, sn := range s.sentinels {
		out = append(out, sn.Addr())
	}
	return out
}

// masterAddr is the master that sentinel i names now.
func (s *sentinelSet) masterAddr(i int) (string, error) {
	rc := client(s.sentinels[i])
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := rc.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName).StringSlice()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("GET-MASTER-ADDR-BY-NAME: %v", hp)
	}
	return hp[0] + ":" + hp[1], nil
}

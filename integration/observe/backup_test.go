package observe

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// A backup of a live cluster's Redis restores into an empty Redis with every
// key byte for byte (DUMP), LiveKit's and the proxy's.
func TestBackupRestoreRoundTrip(t *testing.T) {
	s := start(t)
	harness.Join(t, s.proxy.WS(), "kept-room", "alice")
	if out, err := s.Livekit(t, "drain", s.Nodes[1].IP()); err != nil { // a key of ours too
		t.Fatalf("drain: %v %s", err, out)
	}
	file := filepath.Join(t.TempDir(), "livekit.backup")
	out, err := s.Livekit(t, "backup", file)
	if err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	t.Log(strings.TrimSpace(out))

	fresh := harness.StartRedis(t)
	restore := exec.Command(harness.CaddyBinary(t), "livekit", "--redis", fresh.Addr(), "restore", file)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	keys := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var e struct{ Key, Dump string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		keys[e.Key] = true
		got, err := fresh.Client().Dump(ctx, e.Key).Result()
		want, _ := base64.StdEncoding.DecodeString(e.Dump)
		if err != nil || (got != string(want) && !sameHash(ctx, t, fresh.Client(), e.Key, want)) {
			t.Errorf("key %s did not round-trip: %v", e.Key, err)
		}
	}
	for _, k := range []string{"nodes", "room_node_map", "rooms", "caddy_livekit:drained"} {
		if !keys[k] {
			t.Errorf("backup lacks %s (has %v)", k, keys)
		}
	}
	if n, _ := fresh.Client().DBSize(ctx).Result(); int(n) != len(keys) {
		t.Errorf("restored Redis has %d keys, backup %d", n, len(keys))
	}
	if got := harness.RoomNode(ctx, fresh.Client(), "kept-room"); got != s.RoomNode("kept-room") {
		t.Errorf("room_node_map[kept-room] restored as %q, want %q", got, s.RoomNode("kept-room"))
	}
}

// sameHash: key is a hash with the same fields and values as the one dumped in
// want. A hash in hashtable encoding (LiveKit's `nodes`: values over 64 bytes)
// DUMPs its fields in the dict's iteration order, which a RESTORE need not
// reproduce, so such a hash round-trips with the same content, not the same bytes.
func sameHash(ctx context.Context, t *testing.T, c *redis.Client, key string, want []byte) bool {
	t.Helper()
	if typ, _ := c.Type(ctx, key).Result(); typ != "hash" {
		return false
	}
	scratch := "roundtrip-check:" + key
	if err := c.Restore(ctx, scratch, 0, string(want)).Err(); err != nil {
		t.Errorf("restore %s as %s: %v", key, scratch, err)
		return false
	}
	defer c.Del(ctx, scratch)
	a, err1 := c.HGetAll(ctx, key).Result()
	b, err2 := c.HGetAll(ctx, scratch).Result()
	return err1 == nil && err2 == nil && reflect.DeepEqual(a, b)
}

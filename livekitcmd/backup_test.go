package livekitcmd

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A backup of one Redis restored into a fresh one gives back every key,
// of every type, with its TTL; --match takes a subset.
func TestBackupRestore(t *testing.T) {
	from, to := startRedis(t), startRedis(t)
	ctx := context.Background()
	r := from.rc
	for _, err := range []error{
		r.HSet(ctx, "room_node_map", "standup", "ND_a", "retro", "ND_b").Err(),
		r.Set(ctx, "livekit_version", "1.13.5", 0).Err(),
		r.SAdd(ctx, "some_set", "x", "y").Err(),
		r.Set(ctx, "room_lock:standup", "1", time.Hour).Err(),
		r.HSet(ctx, "caddy_livekit:drained", "ND_b", "2024-01-01T00:00:00Z").Err(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "redis.jsonl")
	if out := mustCLI(t, "backup", file, "--redis", from.addr); !strings.Contains(out, "backed up 5 keys to "+file) {
		t.Errorf("backup said %q", out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the partial file is left: %v", err)
	}

	if err := to.rc.Set(ctx, "livekit_version", "old", 0).Err(); err != nil { // replaced by the restore
		t.Fatal(err)
	}
	if out := mustCLI(t, "restore", file, "--redis", to.addr); !strings.Contains(out, "restored 5 keys") {
		t.Errorf("restore said %q", out)
	}
	if got, _ := to.rc.HGetAll(ctx, "room_node_map").Result(); !reflect.DeepEqual(got, map[string]string{"standup": "ND_a", "retro": "ND_b"}) {
		t.Errorf("room_node_map restored as %v", got)
	}
	if got, _ := to.rc.Get(ctx, "livekit_version").Result(); got != "1.13.5" {
		t.Errorf("livekit_version restored as %q", got)
	}
	if got, _ := to.rc.SMembers(ctx, "some_set").Result(); len(got) != 2 {
		t.Errorf("some_set restored as %v", got)
	}
	if ttl, _ := to.rc.TTL(ctx, "room_lock:standup").Result(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("room_lock:standup restored with TTL %v, want its own (under an hour)", ttl)
	}
	if ttl, _ := to.rc.TTL(ctx, "room_node_map").Result(); ttl != -1 {
		t.Errorf("room_node_map restored with TTL %v, want none", ttl)
	}

	part := filepath.Join(t.TempDir(), "rooms.jsonl")
	if out := mustCLI(t, "backup", part, "--redis", from.addr, "--match", "room*"); !strings.Contains(out, "backed up 2 keys") {
		t.Errorf("backup --match room* said %q", out)
	}

	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"key": "k", "dump": "not base64!"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "restore", bad, "--redis", to.addr); err == nil || !strings.Contains(err.Error(), "key k") {
		t.Errorf("restore of a broken file: %v", err)
	}
	if _, err := cli(t, "restore", filepath.Join(t.TempDir(), "missing"), "--redis", to.addr); err == nil {
		t.Errorf("restore of a missing file: no error")
	}
}

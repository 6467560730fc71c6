package compose

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// Single node: create-room, join, publish; a second participant receives the track.
func TestSingleNodePublishSubscribe(t *testing.T) {
	s := newStack(t, 1)
	// The official images, as .env.example names them: pulled where a registry answers, the local
	// builds otherwise (said once: later deploys on this checkout remember it and say nothing).
	s.set("REDIS_IMAGE", "redis:7")
	s.set("LIVEKIT_IMAGE", "livekit/livekit-server:v1.13.5")
	s.writeEnv()
	out := s.mustDeploySh("deploy")
	for svc, img := range map[string]string{"redis": "redis:7", "livekit1": "livekit/livekit-server:v1.13.5"} {
		got, _ := exec.Command("docker", "inspect", "-f", "{{.Config.Image}}", s.container(svc)).Output()
		if g := strings.TrimSpace(string(got)); g != img && g != "local/"+path.Base(img) {
			t.Errorf("%s runs %q, want %s or its local build:\n%s", svc, g, img, out)
		}
	}
	pasteCreateRoom(t, out)
	status := s.mustDeploySh("status")
	if !strings.Contains(status, "NODE ") || strings.Contains(status, `"level":`) {
		t.Errorf("deploy.sh status: want the table without Caddy's logs:\n%s", status)
	}
	start := time.Now()
	c := s.startClient("caddy", "pubsub", "-room", "single-pubsub")
	r := c.next(90 * time.Second)
	c.wait(30 * time.Second)
	t.Logf("pubsub: %v (client run %s)", r, time.Since(start).Round(100*time.Millisecond))
	if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") {
		t.Fatalf("bob did not receive alice's track: %v", r)
	}
	ws := s.wsConnected("livekit1")
	for _, id := range []string{"alice", "bob"} {
		if len(ws[id]) == 0 {
			t.Errorf("no \"new client WS connected\" line for %s on livekit1", id)
		}
	}
}

// pasteCreateRoom runs the create-room commands deploy printed, as a user pastes them into a
// shell elsewhere: they must answer with a token.
func pasteCreateRoom(t *testing.T, deployOut string) {
	t.Helper()
	_, hint, ok := strings.Cut(deployOut, "Create a room")
	var lines []string
	for _, l := range strings.Split(hint, "\n")[1:] {
		if strings.HasPrefix(l, "  ") {
			lines = append(lines, l)
		}
	}
	if !ok || len(lines) == 0 {
		t.Fatalf("deploy printed no create-room command:\n%s", deployOut)
	}
	cmd := exec.Command("bash", "-c", strings.Join(lines, "\n"))
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"token"`) {
		t.Errorf("the create-room command deploy printed, as pasted: %v\n%s\n%s", err, strings.Join(lines, "\n"), out)
	}
}

// Upgrade: a single node with rooms, then NODES with three entries and deploy again: every Redis
// key but the nodes' own registrations survives unchanged, and deploy.sh verify passes.
func TestUpgradeSingleToCluster(t *testing.T) {
	s := newStack(t, 1)
	s.mustDeploySh("deploy")
	for i := 0; i < 4; i++ {
		s.createRoom("CADDY_PORT", fmt.Sprintf("upgrade-%d", i), "alice")
	}
	s.dockerExec("redis", "redis-cli", "set", "app:marker", "kept")
	before := s.redisKeys()
	rooms := s.redisHash("room_node_map")
	if len(rooms) != 4 {
		t.Fatalf("room_node_map before the upgrade: %v", rooms)
	}

	redisBefore := s.container("redis")
	s.set("NODES", s.nodeList(3))
	s.writeEnv()
	s.mustDeploySh("deploy")
	after := s.redisKeys()
	t.Logf("Redis container kept by the upgrade: %v", s.container("redis") == redisBefore)
	var changed, volatile []string
	same := 0
	for k, v := range before {
		switch {
		case k == "nodes": // rewritten by every node every 2 s
		case v.PTTL > 0: // LiveKit's short-lived keys (expiry set by LiveKit itself)
			volatile = append(volatile, fmt.Sprintf("%s (%s, ttl %dms)", k, v.Type, v.PTTL))
		case after[k] == (keyState{}):
			changed = append(changed, k+" (gone)")
		case after[k].Content != v.Content:
			changed = append(changed, k+" (changed)")
		default:
			same++
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		t.Errorf("keys not kept by the upgrade: %v", changed)
	}
	if !reflect.DeepEqual(s.redisHash("room_node_map"), rooms) {
		t.Errorf("room_node_map before %v, after %v", rooms, s.redisHash("room_node_map"))
	}
	t.Logf("%d keys before, %d after the upgrade: %d kept with the same content, `nodes` rewritten, not compared (expiring): %v",
		len(before), len(after), same, volatile)
	if ids := s.nodeIDs("caddy1"); len(ids) < 3 {
		t.Errorf("nodes after the upgrade: %v", ids)
	}
	out := s.mustDeploySh("verify")
	t.Logf("deploy.sh verify: %s", strings.TrimSpace(out))
}

// Backup, then restore into an empty Redis (a fresh project): every key comes back with the
// same DUMP.
func TestBackupRestore(t *testing.T) {
	a := newStack(t, 1)
	a.mustDeploySh("deploy")
	for i := 0; i < 3; i++ {
		a.createRoom("CADDY_PORT", fmt.Sprintf("backup-%d", i), "alice")
	}
	a.dockerExec("caddy", "caddy", "livekit", "drain", a.vars["NODES"], "--config", "/etc/caddy/Caddyfile")
	a.dockerExec("redis", "redis-cli", "set", "app:ttl-key", "v", "EX", "3600")
	// Freeze A's Redis: a killed node leaves its `nodes` entry as it was (no stats updates, no
	// unregistering), so A's keys can be compared with the restored ones afterwards.
	if out, err := exec.Command("docker", "kill", a.container("livekit1")).CombinedOutput(); err != nil {
		t.Fatalf("docker kill livekit1: %v %s", err, out)
	}
	file := filepath.Join(t.TempDir(), "backup.tar.gz")
	a.mustDeploySh("backup", file)
	live := a.redisKeys()
	backup := readBackup(t, file)
	for k, v := range live {
		if _, ok := backup[k]; !ok && v.PTTL < 0 {
			t.Errorf("key %s is in Redis but not in the backup", k)
		}
	}
	for _, k := range []string{"nodes", "room_node_map", "rooms", "caddy_livekit:drained", "app:ttl-key"} {
		if _, ok := backup[k]; !ok {
			t.Errorf("backup lacks %s (has %d keys)", k, len(backup))
		}
	}

	// The same settings (secrets included) in a new project: its Redis volume is new and empty.
	b := newStack(t, 1)
	for _, k := range []string{"REDIS_PASSWORD", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "CREATE_ROOM_KEY"} {
		b.set(k, a.vars[k])
	}
	b.writeEnv()
	b.mustDeploySh("restore", file)
	restored := b.redisKeys()
	if len(restored) != len(backup) {
		t.Errorf("restored %d keys, the backup has %d", len(restored), len(backup))
	}
	identical, sameContent := 0, 0
	for k, sum := range backup {
		r, ok := restored[k]
		switch {
		case !ok:
			t.Errorf("key %s of the backup is not in the restored Redis", k)
		case r.Dump == sum:
			identical++
		case live[k].Content == r.Content && live[k].Type == r.Type:
			sameContent++ // a hashtable-encoded hash: same fields, another order in DUMP
		default:
			t.Errorf("key %s (%s): restored content differs from the original", k, r.Type)
		}
	}
	t.Logf("round-tripped %d keys: %d with a byte-identical DUMP, %d with the same content (hash field order in DUMP differs)",
		len(backup), identical, sameContent)
	if ttl := strings.TrimSpace(b.dockerExec("redis", "redis-cli", "ttl", "app:ttl-key")); ttl == "-1" || ttl == "-2" {
		t.Errorf("app:ttl-key lost its TTL: %s", ttl)
	}
	b.mustDeploySh("deploy") // the restored state serves: nodes start on it
	b.mustDeploySh("verify")
}

// readBackup returns key -> SHA-1 of DUMP from a deploy.sh backup archive.
func readBackup(t *testing.T, file string) map[string]string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = true
		if h.Name == "config/env.redacted" {
			b, _ := io.ReadAll(tr)
			if strings.Contains(string(b), "pw-") || !strings.Contains(string(b), "REDIS_PASSWORD=<redacted>") {
				t.Errorf("env in the backup is not redacted:\n%s", b)
			}
		}
		if h.Name != "redis.jsonl" {
			continue
		}
		sc := bufio.NewScanner(tr)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e struct {
				Key  string `json:"key"`
				Dump string `json:"dump"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(e.Dump)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha1.Sum(raw)
			out[e.Key] = hex.EncodeToString(sum[:])
		}
	}
	for _, n := range []string{"MANIFEST", "redis.jsonl", "config/Caddyfile", "config/env.redacted"} {
		if !seen[n] {
			t.Errorf("backup lacks %s", n)
		}
	}
	return out
}

package livekitcmd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// deployment record writes "DIGEST TIME" under the machine in the proxy's
// hash; list reads them all back.
func TestDeploymentRecordAndList(t *testing.T) {
	r := startRedis(t)
	cfg := writeCaddyfile(t, r, nil)
	before := time.Now().UTC().Truncate(time.Second)
	out := mustCLI(t, "deployment", "record", "10.9.0.1", "abc123", "--config", cfg)
	if !strings.Contains(out, "recorded: machine 10.9.0.1 runs abc123") {
		t.Errorf("deployment record said %q", out)
	}
	rec, err := r.rc.HGet(context.Background(), "caddy_livekit:deployments", "10.9.0.1").Result()
	if err != nil {
		t.Fatal(err)
	}
	digest, at, _ := strings.Cut(rec, " ")
	when, err := time.Parse(time.RFC3339, at)
	if digest != "abc123" || err != nil || when.Before(before) || when.Location() != time.UTC {
		t.Errorf("record in Redis %q: want abc123 and an RFC 3339 UTC time from now (%v)", rec, err)
	}

	mustCLI(t, "deployment", "record", "10.9.0.2", "def456", "--config", cfg)
	mustCLI(t, "deployment", "record", "10.9.0.1", "abc124", "--config", cfg) // a new deploy replaces the record
	var list struct {
		Deployments []deployment `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "deployment", "list", "--config", cfg, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if d := list.Deployments; len(d) != 2 || d[0].Machine != "10.9.0.1" || d[0].Digest != "abc124" || d[1].Digest != "def456" || d[1].At == "" {
		t.Errorf("deployment list --json: %+v", d)
	}
	out = mustCLI(t, "deployment", "list", "--config", cfg)
	if !strings.Contains(out, "10.9.0.2") || !strings.Contains(out, "def456") || !strings.Contains(out, "(2 machines)") {
		t.Errorf("deployment list:\n%s", out)
	}

	for _, args := range [][]string{
		{"deployment", "record", "10.9.0.3", "two words"},
		{"deployment", "record", "10.9.0.3"},
		{"deployment", "record", " ", "abc"},
		{"deployment"},
		{"deployment", "forget", "10.9.0.1"},
	} {
		if _, err := cli(t, append(args, "--config", cfg)...); err == nil {
			t.Errorf("caddy livekit %s: no error", strings.Join(args, " "))
		}
	}
	if n, _ := r.rc.HLen(context.Background(), "caddy_livekit:deployments").Result(); n != 2 {
		t.Errorf("%d records after refused commands, want 2", n)
	}
}

// verify --machine --digest names every other machine of --nodes whose
// recorded digest is another; machines not in --nodes are left alone.
func TestVerifyDeployments(t *testing.T) {
	r := startRedis(t)
	dial := map[string]string{}
	for i, ip := range []string{"10.9.0.1", "10.9.0.2", "10.9.0.3"} {
		r.register(t, lkNode("ND_"+string(rune('a'+i)), ip, serving, 0))
		dial[ip] = liveNode(t)
	}
	cfg := writeCaddyfile(t, r, dial)
	ctx := context.Background()
	for machine, record := range map[string]string{
		"10.9.0.1": "same 2024-01-01T00:00:00Z", // this machine
		"10.9.0.2": "same 2024-01-02T00:00:00Z",
		"10.9.0.3": "other 2024-01-03T00:00:00Z",
		"10.9.0.9": "gone 2023-01-01T00:00:00Z", // no longer in NODES
	} {
		if err := r.rc.HSet(ctx, "caddy_livekit:deployments", machine, record).Err(); err != nil {
			t.Fatal(err)
		}
	}
	nodes := "10.9.0.1,10.9.0.2,10.9.0.3"

	out, err := cli(t, "verify", "--config", cfg, "--nodes", nodes, "--machine", "10.9.0.1", "--digest", "same")
	want := "machine 10.9.0.3 was deployed (2024-01-03T00:00:00Z) with another .env or Caddyfile than this machine's: copy them there and run ./deploy.sh deploy"
	if got := problems(out); err == nil || len(got) != 1 || got[0] != want {
		t.Errorf("verify with machine 3 on another digest: %v %q, want [%q]", err, got, want)
	}
	// from machine 3, the two others differ
	out, _ = cli(t, "verify", "--config", cfg, "--nodes", nodes, "--machine", "10.9.0.3", "--digest", "other")
	if got := problems(out); len(got) != 2 || !strings.HasPrefix(got[0], "machine 10.9.0.1 ") || !strings.HasPrefix(got[1], "machine 10.9.0.2 ") {
		t.Errorf("verify from machine 3: %q", got)
	}
	// once machine 3 is deployed with the same configuration, all is well
	mustCLI(t, "deployment", "record", "10.9.0.3", "same", "--config", cfg)
	mustCLI(t, "verify", "--config", cfg, "--nodes", nodes, "--machine", "10.9.0.1", "--digest", "same")
	// without --digest, the records are not read
	mustCLI(t, "verify", "--config", cfg, "--nodes", nodes)
	if _, err := cli(t, "verify", "--config", cfg, "--nodes", nodes, "--machine", "10.9.0.1"); err == nil || !strings.Contains(err.Error(), "--digest") {
		t.Errorf("verify --machine without --digest: %v", err)
	}
}

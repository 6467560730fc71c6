package livekitcmd

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// problems returns the PROBLEM lines of verify's output.
func problems(out string) []string {
	var p []string
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "PROBLEM: "); ok {
			p = append(p, s)
		}
	}
	return p
}

func TestVerifyHealthy(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0), lkNode("ND_b", "10.9.0.2", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t), "10.9.0.2": liveNode(t)})
	out := mustCLI(t, "verify", "--config", cfg, "--nodes", "10.9.0.1, 10.9.0.2")
	if !strings.Contains(out, "OK: Redis reachable, 2 node(s) serving and answering") || len(problems(out)) != 0 {
		t.Errorf("verify of a healthy cluster:\n%s", out)
	}
	// $NODES is the default of --nodes
	t.Setenv("NODES", "10.9.0.1,10.9.0.3")
	root := verifyCommand()
	if got := root.Flags().Lookup("nodes").DefValue; got != "10.9.0.1,10.9.0.3" {
		t.Errorf("--nodes default %q, want $NODES", got)
	}
}

// Every problem an operator must hear of, one line each, and exit status 1.
func TestVerifyProblems(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	ctx := context.Background()
	if err := r.rc.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	r.register(t,
		lkNode("ND_ok", "10.9.0.1", serving, 0),
		lkNode("ND_silent", "10.9.0.2", serving, 0),
		lkNode("ND_crashed", "10.9.0.3", serving, 2*time.Hour), // stale_after is 1h
		lkNode("ND_leaving", "10.9.0.4", draining, 0),
		// the entry a crashed node left behind, beside its successor on the same IP: not a problem
		lkNode("ND_old", "10.9.0.1", serving, 3*time.Hour),
		lkNode("ND_public", "192.0.2.7", serving, 0))
	if err := r.rc.HSet(ctx, "nodes", "ND_forged", "not a protobuf").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := writeCaddyfile(t, r, map[string]string{
		"10.9.0.1": liveNode(t), "10.9.0.2": deadNode(t), "10.9.0.3": liveNode(t), "10.9.0.4": liveNode(t)})

	out, err := cli(t, "verify", "--config", cfg, "--nodes", "10.9.0.1,10.9.0.2,10.9.0.5")
	want := []string{
		"Redis maxmemory-policy is allkeys-lru: it can evict LiveKit's node registrations and room placements; use noeviction",
		`nodes entry "ND_forged" ignored: not a livekit.Node protobuf`,
		"node 10.9.0.2 (ND_silent): not answering on ",
		"node 10.9.0.3 (ND_crashed): stats 7", // 7200s old, or a little more
		"node 10.9.0.4 (ND_leaving): state SHUTTING_DOWN",
		"node 192.0.2.7 (ND_public): never dialled: node address 192.0.2.7 is outside allow_networks and has no node_addresses mapping",
		"node 10.9.0.5 from NODES is not registered in Redis",
	}
	got := problems(out)
	if err == nil || err.Error() != "7 problem(s)" || len(got) != len(want) {
		t.Errorf("verify: error %v and %d problems, want 7:\n%s", err, len(got), out)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("verify lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "ND_old") {
		t.Errorf("verify names the dead entry of an IP whose new node serves:\n%s", out)
	}

	var answer struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	}
	out, err = cli(t, "verify", "--config", cfg, "--nodes", "10.9.0.1,10.9.0.2,10.9.0.5", "--json")
	if jerr := json.Unmarshal([]byte(out), &answer); jerr != nil || err == nil || answer.OK || len(answer.Problems) != 7 {
		t.Errorf("verify --json: %v %v %+v", jerr, err, answer)
	}
}

// A node registered but not routable is named once: its own line says why.
func TestVerifyNodeNamedOnce(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": deadNode(t)})
	out, _ := cli(t, "verify", "--config", cfg, "--nodes", "10.9.0.1")
	if got := problems(out); len(got) != 1 || !strings.HasPrefix(got[0], "node 10.9.0.1 (ND_a): not answering") {
		t.Errorf("verify of one silent node: %q", got)
	}
}

// Stale is the cluster's rule (stale_after), not a number of verify's own.
func TestVerifyStaleAfter(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, time.Minute))
	dial := map[string]string{"10.9.0.1": liveNode(t)}
	if out := mustCLI(t, "verify", "--config", writeCaddyfile(t, r, dial)); len(problems(out)) != 0 {
		t.Errorf("a node with stats a minute old, stale_after 1h:\n%s", out)
	}
	// the same node under stale_after 30s (a second stale_after line wins)
	out, err := cli(t, "verify", "--config", writeCaddyfile(t, r, dial, "stale_after 30s"))
	if got := problems(out); err == nil || len(got) != 1 || !strings.Contains(got[0], "node not updating") {
		t.Errorf("a node with stats a minute old, stale_after 30s: %v\n%s", err, out)
	}
}

// Behind 1:1 NAT a node registers its public address and the proxy dials
// its NODES (private) address: verify names a node that registers its
// private address, a public address without a mapping, and a mapping to
// another host.
func TestVerifyBehindNAT(t *testing.T) {
	t.Setenv("NODES", "")
	t.Setenv("PUBLIC_IPS", "")
	r := startRedis(t)
	r.register(t,
		lkNode("ND_good", "198.51.100.11", serving, 0),
		lkNode("ND_private", "127.0.0.3", serving, 0), // node_ip left at the private address
		lkNode("ND_unmapped", "198.51.100.13", serving, 0),
		lkNode("ND_elsewhere", "198.51.100.14", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{
		"198.51.100.11": liveNodeOn(t, "127.0.0.2"), "127.0.0.3": liveNodeOn(t, "127.0.0.3"), "198.51.100.14": liveNode(t)})
	out, err := cli(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3,10.9.0.13,127.0.0.4",
		"--public-ips", "198.51.100.11,198.51.100.12,198.51.100.13,198.51.100.14")
	want := []string{
		"node 198.51.100.13 (ND_unmapped): never dialled: node address 198.51.100.13 is outside allow_networks and has no node_addresses mapping (a node behind NAT: map its public address to its private one, 198.51.100.13=<private IP>:7880)",
		"node 127.0.0.3 registers its private address: its node_ip must be its public address 198.51.100.12 (PUBLIC_IPS), or clients outside get no media",
		"node 198.51.100.14 (ND_elsewhere) is dialled on 127.0.0.1:",
	}
	got := problems(out)
	if err == nil || len(got) != len(want) {
		t.Errorf("verify behind NAT: error %v, %d problems, want %d:\n%s", err, len(got), len(want), out)
	}
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("problem %d: want %q:\n%s", i, w, out)
		}
	}
	if out := mustCLI(t, "status", "--config", cfg); !strings.Contains(out, " 198.51.100.11 via 127.0.0.2:") {
		t.Errorf("status does not show the public address and where it is dialled:\n%s", out)
	}
	// the good node alone passes, and a node without NAT (empty entry) is checked as before
	r.rc.HDel(context.Background(), "nodes", "ND_unmapped", "ND_elsewhere")
	out = mustCLI(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3", "--public-ips", "198.51.100.11,")
	if len(problems(out)) != 0 {
		t.Errorf("verify of a NAT node and a plain one:\n%s", out)
	}
	if _, err := cli(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3", "--public-ips", "198.51.100.11"); err == nil ||
		!strings.Contains(err.Error(), "--public-ips has 1 entries and --nodes 2") {
		t.Errorf("--public-ips shorter than --nodes: %v", err)
	}
}

// With NODE_REGIONS, each node must register its region (its livekit.yaml's
// region:): a node deployed from an older .env is named.
func TestVerifyRegions(t *testing.T) {
	t.Setenv("NODES", "")
	t.Setenv("NODE_REGIONS", "")
	r := startRedis(t)
	east, none := lkNode("ND_east", "127.0.0.2", serving, 0), lkNode("ND_none", "127.0.0.3", serving, 0)
	east.Region = "east"
	r.register(t, east, none)
	cfg := writeCaddyfile(t, r, map[string]string{"127.0.0.2": liveNodeOn(t, "127.0.0.2"), "127.0.0.3": liveNodeOn(t, "127.0.0.3")})
	out, err := cli(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3", "--regions", "east, west")
	want := `node 127.0.0.3 (ND_none) registers region "" and NODE_REGIONS gives it "west": deploy it again with this .env`
	if got := problems(out); err == nil || len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("verify --regions: %v, want one problem %q:\n%s", err, want, out)
	}
	t.Setenv("NODE_REGIONS", "east,")
	if out := mustCLI(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3"); len(problems(out)) != 0 {
		t.Errorf("$NODE_REGIONS east and nothing to check for the second:\n%s", out)
	}
	if _, err := cli(t, "verify", "--config", cfg, "--nodes", "127.0.0.2,127.0.0.3", "--regions", "east"); err == nil ||
		!strings.Contains(err.Error(), "--regions has 1 entries and --nodes 2") {
		t.Errorf("--regions shorter than --nodes: %v", err)
	}
}

// Redis without a password that listens beyond loopback is a problem.
func TestLoopbackOnly(t *testing.T) {
	for bind, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.1 -::1": true, "localhost": true, "": false, "0.0.0.0": false, "127.0.0.1 10.0.0.1": false, "* -::*": false,
	} {
		if got := loopbackOnly(bind); got != want {
			t.Errorf("loopbackOnly(%q) = %v", bind, got)
		}
	}
}

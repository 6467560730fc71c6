package compose

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TURN over TLS on 443 (TURN=on) on two machines with Caddy's internal CA: a participant that may
// use relay candidates only and whose UDP is dropped joins through the proxy, publishes, and a
// second one (the same) receives; each relays through the TURN server of the node hosting its
// room, for a room on each node, whether every TURN name resolves to its own machine or all of
// them to machine 1 (one public IP in front of every machine: machine 1's Caddy passes turn-2 to
// machine 2's node over the private network). A relay-only join with UDP open (TURN over UDP) and
// a direct UDP join beside them, for the join times (LKLB_TURN_TRIALS joins of each, default 1).
func TestTURN(t *testing.T) {
	ms := newMachines(t, 2)
	ms.env.set("TURN", "on")
	ms.setNodes(2)
	for i, m := range ms.m {
		if out := m.mustDeploySh("deploy"); !strings.Contains(out, "node "+ms.ips[i]+" is up") {
			t.Fatalf("machine %d:\n%s", i+1, out)
		}
	}
	for i, m := range ms.m {
		out := strings.TrimSpace(m.mustDeploySh("verify"))
		t.Logf("machine %d: deploy.sh verify: %s", i+1, out)
		if !strings.HasSuffix(out, "TURN over TLS on 443 for turn-1.livekit.test turn-2.livekit.test") {
			t.Errorf("deploy.sh verify on machine %d did not check both TURN names", i+1)
		}
	}
	trials := 1
	if n, err := strconv.Atoi(os.Getenv("LKLB_TURN_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	joins := map[string][]float64{}
	for _, c := range []struct {
		name  string
		entry int   // the machine livekit.test resolves to
		turn  []int // the machine each TURN name resolves to
	}{
		{"own-machines", 1, []int{0, 1}},
		{"one-public-ip", 0, []int{0, 0}},
	} {
		ms.in(t, c.name, func(t *testing.T) {
			for host := range ms.ips {
				for n := 0; n < trials; n++ {
					room := fmt.Sprintf("turn-%s-%d-%d", c.name, host, n)
					r := ms.onNode(host, func() *client { return ms.relayClient(c.entry, c.turn, true, "pubsub", "-room", room) })
					checkRelayed(t, ms, r, room, host, "tls")
					joins["relay"] = append(joins["relay"], r["join_ms"].(float64))
				}
			}
		})
	}
	// Relay-only with UDP open: TURN over UDP, for the join time beside TURN over TLS.
	ms.in(t, "relay-udp-open", func(t *testing.T) {
		for n := 0; n < trials; n++ {
			room := fmt.Sprintf("turn-udp-open-%d", n)
			r := ms.onNode(1, func() *client { return ms.relayClient(0, []int{0, 1}, false, "pubsub", "-room", room) })
			checkRelayed(t, ms, r, room, 1, "udp")
			joins["relay-udp"] = append(joins["relay-udp"], r["join_ms"].(float64))
		}
	})
	ms.in(t, "direct-udp", func(t *testing.T) {
		for n := 0; n < trials; n++ {
			c := ms.client(0, "pubsub", "-room", fmt.Sprintf("turn-direct-%d", n))
			r := c.next(90 * time.Second)
			c.wait(30 * time.Second)
			if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") {
				t.Fatalf("bob did not receive alice's track: %v", r)
			}
			if p := r["alice_pair"].(map[string]any); p["local_type"] == "relay" || p["local_protocol"] != "udp" {
				t.Errorf("a client with UDP joined over %v", p)
			}
			joins["direct"] = append(joins["direct"], r["join_ms"].(float64))
		}
	})
	t.Logf("alice's join (create-room to media flowing on her publisher connection), ms: relay-only over TURN/TLS %v, "+
		"relay-only over TURN/UDP %v, direct UDP %v", joins["relay"], joins["relay-udp"], joins["direct"])
}

// onNode runs start while every other node is drained (so the room it creates is placed on the
// node of machine host), and returns its result line.
func (ms *machines) onNode(host int, start func() *client) map[string]any {
	ms.t.Helper()
	drain := func(cmd string) {
		for i, ip := range ms.ips {
			if i != host {
				ms.m[0].dockerExec("caddy", "caddy", "livekit", cmd, ip, "--config", "/etc/caddy/Caddyfile")
			}
		}
	}
	drain("drain")
	defer drain("undrain")
	time.Sleep(2 * time.Second) // every proxy has read the drain list again (refresh_interval 1s)
	c := start()
	r := c.next(120 * time.Second)
	c.wait(30 * time.Second)
	return r
}

// relayClient runs lkclient with relay candidates only (-relay) on the machines' network, with
// UDP dropped in its network namespace (iptables, from this host) when dropUDP, livekit.test
// resolving to machine entry and turn-<n>.livekit.test to machine turn[n-1]. The namespace is a
// holder container's, made and walled off before lkclient starts in it.
func (ms *machines) relayClient(entry int, turn []int, dropUDP bool, args ...string) *client {
	ms.t.Helper()
	m := ms.m[entry]
	holder := m.project + "-client-ns-" + randHex(3)
	run := []string{"run", "-d", "--name", holder, "--network", ms.lan, "--add-host", "livekit.test:" + ms.ips[entry]}
	for n, i := range turn {
		run = append(run, "--add-host", fmt.Sprintf("turn-%d.livekit.test:%s", n+1, ms.ips[i]))
	}
	run = append(run, env("BASE_IMAGE", "local/debian:bookworm"), "sleep", "infinity")
	if out, err := exec.Command("docker", run...).CombinedOutput(); err != nil {
		ms.t.Fatalf("client namespace: %v %s", err, out)
	}
	ms.t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", holder).Run() })
	pid, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", holder).Output()
	if err != nil {
		ms.t.Fatal(err)
	}
	netns := "--net=/proc/" + strings.TrimSpace(string(pid)) + "/ns/net"
	for _, chain := range []string{"OUTPUT", "INPUT"} {
		if !dropUDP {
			break
		}
		if out, err := exec.Command("nsenter", netns, "iptables", "-A", chain, "-p", "udp", "-j", "DROP").CombinedOutput(); err != nil {
			ms.t.Fatalf("dropping UDP for the client: %v %s", err, out)
		}
	}
	opts := append([]string{"--network", "container:" + holder}, ms.trustOpts()...)
	return m.runClient(opts, "https://livekit.test", append([]string{"-relay"}, args...)...)
}

// checkRelayed: r is a relay-only pubsub in room that reached bob, and both alice's publisher and
// bob's subscriber connections carry media over TURN (relayProtocol: tls or udp) relayed by the
// node of machine host, which hosts room.
func checkRelayed(t *testing.T, ms *machines, r map[string]any, room string, host int, relayProtocol string) {
	t.Helper()
	if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") || r["relay_only"] != true {
		t.Fatalf("bob did not receive alice's track relay-only: %v", r)
	}
	if got := ms.roomMachine()[room]; got != host {
		t.Fatalf("room %s is on machine %d, want %d (the other node was drained)", room, got+1, host+1)
	}
	for _, who := range []string{"alice_pair", "bob_pair"} {
		p, _ := r[who].(map[string]any)
		if p["local_type"] != "relay" || p["relay_protocol"] != relayProtocol || p["local_ip"] != ms.ips[host] || p["remote_ip"] != ms.ips[host] {
			t.Errorf("%s: %v; want a relay candidate over %s allocated by node %s (machine %d, hosting %s), to that node",
				who, p, relayProtocol, ms.ips[host], host+1, room)
		}
	}
	t.Logf("%s on machine %d: alice's media relayed at %v:%v over %v, joined in %v ms", room, host+1,
		r["alice_pair"].(map[string]any)["local_ip"], r["alice_pair"].(map[string]any)["local_port"],
		r["alice_pair"].(map[string]any)["relay_protocol"], r["join_ms"])
}

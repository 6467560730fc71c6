package compose

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Three cloud VMs behind 1:1 NAT: each machine is on a private network (NODES, Redis, the proxies
// dialling the nodes) and a public one that the clients alone sit on (PUBLIC_IPS), clients whose
// own NAT lets no UDP flow in that they did not start. Every node
// advertises its public address; every proxy dials the private one mapped to it; a client that can
// reach only the public network joins through a proxy, publishes and receives media, and its
// WebSocket lands on its room's node; a machine cut off is routed around as without NAT.
func TestCloudNAT(t *testing.T) {
	ms := newMachines(t, 3)
	wan, public := ms.publicNetwork(t)
	ms.env.set("PUBLIC_IPS", strings.Join(public, ","))
	ms.setNodes(3)
	for i, m := range ms.m {
		out := m.mustDeploySh("deploy")
		if !strings.Contains(out, fmt.Sprintf("node %s is up (%s, public address %s;", ms.ips[i], m.project, public[i])) {
			t.Fatalf("machine %d:\n%s", i+1, out)
		}
	}
	ms.in(t, "addresses", func(t *testing.T) {
		for i, m := range ms.m {
			out := m.mustDeploySh("verify")
			if !strings.Contains(out, "(public addresses "+strings.Join(public, ",")+", dialled on the private ones)") {
				t.Errorf("deploy.sh verify on machine %d:\n%s", i+1, out)
			}
		}
		// every proxy sees each node under its public address and dials its private one
		for i, m := range ms.m {
			got := map[string]string{}
			for _, n := range caddyStatus(t, m).Nodes {
				got[n.IP] = n.Dial
			}
			want := map[string]string{}
			for j := range ms.ips {
				want[public[j]] = ms.ips[j] + ":7880"
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("machine %d's proxy: nodes (registered -> dialled) %v, want %v", i+1, got, want)
			}
		}
		// the clients' network reaches the public side only
		if out, err := exec.Command("docker", "run", "--rm", "--network", wan, env("BASE_IMAGE", "local/debian:bookworm"),
			"bash", "-c", "timeout 3 bash -c '</dev/tcp/"+ms.ips[0]+"/7880'").CombinedOutput(); err == nil {
			t.Fatalf("a container on the public network reached the private %s:7880 (%s)", ms.ips[0], out)
		}
	})
	ms.in(t, "media", func(t *testing.T) {
		c := ms.clientOn(wan, public[1], "pubsub", "-room", "nat-pubsub")
		r := c.next(90 * time.Second)
		c.wait(30 * time.Second)
		t.Logf("pubsub through machine 2's public address: %v", r)
		if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") {
			t.Fatalf("bob did not receive alice's track: %v", r)
		}
		host := ms.roomMachine()["nat-pubsub"]
		if ws := ms.wsConnected(); !reflect.DeepEqual(ws["alice"], []int{host}) || !reflect.DeepEqual(ws["bob"], []int{host}) {
			t.Errorf("nat-pubsub is on machine %d (0-based); WebSockets of alice %v, bob %v", host, ws["alice"], ws["bob"])
		}
	})
	ms.in(t, "spread", func(t *testing.T) {
		c := ms.clientOn(wan, public[2], "rooms", "-rooms", "4", "-per-room", "2", "-prefix", "nat")
		var identities []string
		for m := c.next(120 * time.Second); m["event"] != "holding"; m = c.next(60 * time.Second) {
			identities = append(identities, fmt.Sprint(m["identity"]))
		}
		rooms, ws := ms.roomMachine(), ms.wsConnected()
		c.wait(30 * time.Second)
		for _, id := range identities {
			room := id[:strings.LastIndex(id, "-p")]
			if got := ws[id]; rooms[room] < 0 || !reflect.DeepEqual(got, []int{rooms[room]}) {
				t.Errorf("%s in room %s (machine %d, 0-based): WebSocket on machines %v", id, room, rooms[room], got)
			}
		}
	})
	ms.in(t, "machine-lost", func(t *testing.T) {
		m1 := ms.m[0]
		// machine 1 holds Redis: keep the room off it
		ms.drain(0, public[0])
		c := ms.clientOn(wan, public[0], "failover", "-room", "nat-lost", "-n", "2")
		c.next(90 * time.Second)
		host := ms.roomMachine()["nat-lost"]
		if host < 1 {
			t.Fatalf("nat-lost is on machine %d, want 2 or 3", host+1)
		}
		cut := time.Now()
		for _, network := range []string{ms.lan, wan} { // a VM that froze: gone from both sides
			if out, err := exec.Command("docker", "network", "disconnect", "--force", network, ms.m[host].machine).CombinedOutput(); err != nil {
				t.Fatalf("cutting machine %d off %s: %v %s", host+1, network, err, out)
			}
		}
		c.send("kill")
		res := c.next(90 * time.Second)
		t.Logf("machine %d cut off; first successful rejoin through machine 1's public address %d ms later (%v attempt(s))",
			host+1, int64(res["rejoined_unix_ms"].(float64))-cut.UnixMilli(), res["attempts"])
		c.next(60 * time.Second)
		c.wait(30 * time.Second)
		if at, _ := outOfRotation(m1, ms.ips[host]+":7880", cut); at.IsZero() {
			t.Errorf("machine 1's proxy never logged %s:7880 (public %s) out of rotation", ms.ips[host], public[host])
		}
		if landed := ms.wsConnected()["nat-lost-rejoiner"]; len(landed) == 0 || landed[len(landed)-1] == host {
			t.Errorf("the rejoin landed on machines %v (0-based); machine %d was cut off", landed, host+1)
		}
	})
}

// publicNetwork connects every machine to a second network, the public side of its 1:1 NAT, and
// returns its name and the machines' addresses there.
func (ms *machines) publicNetwork(t *testing.T) (string, []string) {
	t.Helper()
	prefix := freeSubnet(t)
	wan := ms.env.project + "_wan"
	if out, err := exec.Command("docker", "network", "create", "--subnet", prefix+".0/24", wan).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v %s", err, out)
	}
	var public []string
	t.Cleanup(func() { // before the machines are removed: let go of them first
		for _, m := range ms.m {
			_ = exec.Command("docker", "network", "disconnect", "--force", wan, m.machine).Run()
		}
		_ = exec.Command("docker", "network", "rm", wan).Run()
	})
	for i, m := range ms.m {
		ip := fmt.Sprintf("%s.%d", prefix, 11+i)
		if out, err := exec.Command("docker", "network", "connect", "--ip", ip, wan, m.machine).CombinedOutput(); err != nil {
			t.Fatalf("machine %d on %s: %v %s", i+1, wan, err, out)
		}
		public = append(public, ip)
		// Clients sit behind NATs of their own: a machine cannot start a UDP flow towards one, only
		// answer one the client started. Without this, ICE would succeed from the node's side (a
		// peer-reflexive candidate) whatever address the node advertised.
		pid, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", m.machine).Output()
		if err != nil {
			t.Fatalf("machine %d: %v", i+1, err)
		}
		iptables := "iptables"
		if _, err := exec.LookPath(iptables); err != nil {
			iptables = "/usr/sbin/iptables"
		}
		if out, err := exec.Command("nsenter", "--net=/proc/"+strings.TrimSpace(string(pid))+"/ns/net", iptables,
			"-A", "OUTPUT", "-d", prefix+".0/24", "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("machine %d: iptables: %v %s", i+1, err, out)
		}
	}
	return wan, public
}

// caddyStatus is `caddy livekit status --json` in s's proxy.
func caddyStatus(t *testing.T, s *stack) (st struct {
	Nodes []struct{ ID, IP, Dial, Region string }
}) {
	t.Helper()
	out := s.dockerExec("caddy", "caddy", "livekit", "status", "--json", "--config", "/etc/caddy/Caddyfile")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		t.Fatalf("caddy livekit status --json: %v\n%s", err, out)
	}
	return st
}

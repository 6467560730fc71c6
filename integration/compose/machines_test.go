package compose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// machines is a deployment over several machines, each a container of its own with its own address
// on one network. deploy.sh runs on each, in the machine's network namespace (nsenter), with the one
// .env that every machine shares; the containers it starts join that namespace
// (HOST_NETWORK=container:<machine>) as they join the host's network on a real machine. The
// machines share this Docker engine, hence a compose project each (COMPOSE_PROJECT_NAME in the
// environment, which wins over .env).
type machines struct {
	t   *testing.T
	env *stack   // the shared .env
	m   []*stack // machine i's compose project
	ips []string
	lan string // the machines' network
	ca  string // CA file clients trust; "": every machine's internal CA (TLS=internal)
}

func newMachines(t *testing.T, n int) *machines {
	t.Helper()
	base := newStack(t, 1)
	ms := &machines{t: t, env: base, lan: base.project + "_lan"}
	if out, err := exec.Command("docker", "network", "create", "--subnet", base.prefix+".0/24", ms.lan).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v %s", err, out)
	}
	var hosts []string
	t.Cleanup(func() { // after every machine's project is gone (cleanups run last first)
		_ = exec.Command("docker", append([]string{"rm", "-f"}, hosts...)...).Run()
		_ = exec.Command("docker", "network", "rm", ms.lan).Run()
	})
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%s.%d", base.prefix, 11+i)
		host := fmt.Sprintf("%s-host%d", base.project, i+1)
		out, err := exec.Command("docker", "run", "-d", "--name", host, "--hostname", fmt.Sprintf("host%d", i+1),
			"--network", ms.lan, "--ip", ip, env("BASE_IMAGE", "local/debian:bookworm"), "sleep", "infinity").CombinedOutput()
		if err != nil {
			t.Fatalf("machine %s: %v %s", host, err, out)
		}
		hosts = append(hosts, host)
		m := *base
		m.project = fmt.Sprintf("%sm%d", base.project, i+1)
		m.machine = host
		m.env = []string{"COMPOSE_PROJECT_NAME=" + m.project, "HOST_NETWORK=container:" + host}
		ms.m = append(ms.m, &m)
		ms.ips = append(ms.ips, ip)
		t.Cleanup(m.teardown)
	}
	base.set("STUN_SERVERS", ms.ips[0]+":3478") // what clients are told; nothing listens there
	base.set("TLS", "internal")
	base.set("DOMAIN", "livekit.test")
	return ms
}

// setNodes writes the shared .env with the first n machines in NODES.
func (ms *machines) setNodes(n int) {
	ms.env.set("NODES", strings.Join(ms.ips[:n], ","))
	ms.env.writeEnv()
}

// client runs lkclient on the machines' network against https://livekit.test, which resolves to
// machine i, trusting every machine's internal CA (each Caddy has its own).
func (ms *machines) client(i int, args ...string) *client {
	ms.t.Helper()
	ca := ms.ca
	if ca == "" {
		var bundle strings.Builder
		for _, m := range ms.m {
			if m.container("caddy") != "" {
				bundle.WriteString(m.dockerExec("caddy", "cat", "/data/caddy/pki/authorities/local/root.crt"))
			}
		}
		ca = filepath.Join(ms.env.dir, "ca-"+randHex(3)+".pem")
		if err := os.WriteFile(ca, []byte(bundle.String()), 0o644); err != nil {
			ms.t.Fatal(err)
		}
	}
	opts := []string{"--network", ms.lan, "--add-host", "livekit.test:" + ms.ips[i],
		"-v", ca + ":/etc/lkclient-ca.pem:ro", "-e", "SSL_CERT_FILE=/etc/lkclient-ca.pem"}
	return ms.m[i].runClient(opts, "https://livekit.test", args...)
}

// wsConnected maps identity -> machines (0-based) whose node logged its WebSocket.
func (ms *machines) wsConnected() map[string][]int {
	out := map[string][]int{}
	for i, m := range ms.m {
		if m.container("livekit") == "" {
			continue
		}
		for id := range m.wsConnected("livekit") {
			out[id] = append(out[id], i)
		}
	}
	return out
}

// roomMachine maps every room of room_node_map to the machine hosting it (-1: none of ours).
func (ms *machines) roomMachine() map[string]int {
	m1 := ms.m[0]
	ids := m1.nodeIDs("caddy") // node ID -> livekitN, N the machine's place in NODES
	out := map[string]int{}
	for room, id := range m1.redisHash("room_node_map") {
		n := 0
		if svc, ok := ids[id]; ok {
			fmt.Sscanf(svc, "livekit%d", &n)
		}
		out[room] = n - 1
	}
	return out
}

// in runs f as a subtest whose failures every machine's helpers report.
func (ms *machines) in(t *testing.T, name string, f func(t *testing.T)) {
	all := append([]*stack{ms.env}, ms.m...)
	t.Run(name, func(t *testing.T) {
		for _, s := range all {
			s.t = t
		}
		defer func() {
			for _, s := range all {
				s.t = ms.t
			}
		}()
		f(t)
	})
}

// outOfRotation: when, and with what message, the caddy of s first logged the node at dial out of
// rotation after since.
func outOfRotation(s *stack, dial string, since time.Time) (time.Time, string) {
	out, _ := exec.Command("docker", "logs", s.container("caddy")).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		var l struct {
			TS   float64 `json:"ts"`
			Msg  string  `json:"msg"`
			Dial string  `json:"dial"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Dial != dial || !strings.Contains(l.Msg, "out of rotation") {
			continue
		}
		if at := time.UnixMilli(int64(l.TS * 1000)); at.After(since) {
			return at, l.Msg
		}
	}
	return time.Time{}, ""
}

func keysOf(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func containerIDs(s *stack, services ...string) map[string]string {
	m := map[string]string{}
	for _, svc := range services {
		m[svc] = s.container(svc)
	}
	return m
}

// Several machines with one .env: a one-machine try-out switched to host networking, then three
// machines (the upgrade keeps every Redis key and leaves the first machine's containers and
// participants alone; a machine deployed from another .env is named by verify); rooms spread over
// the machines with every WebSocket on its room's machine, through any machine's proxy, over TLS;
// backup and restore from machines without Redis; a machine cut off the network is routed around.
func TestMachines(t *testing.T) {
	ms := newMachines(t, 3)
	m1 := ms.m[0]
	// A try-out first: the one-machine stack on a bridge network (none of NODES is the machine's).
	ms.env.set("NODES", freeSubnet(t)+".11")
	ms.env.set("TLS", "off")
	ms.env.writeEnv()
	machine := m1.machine
	m1.machine = "" // the try-out publishes its Caddy on this host's loopback: deploy.sh runs here
	m1.mustDeploySh("deploy")
	m1.machine = machine
	m1.createRoom("CADDY_PORT", "tryout-0", "alice")
	m1.dockerExec("redis", "redis-cli", "set", "app:marker", "kept")

	// The machine's own address in NODES: host networking, TLS; Redis' volume is the same.
	ms.env.set("TLS", "internal")
	ms.setNodes(1)
	out := m1.mustDeploySh("deploy")
	if !strings.Contains(out, "switching "+m1.project+" from single to host") || !strings.Contains(out, "node "+ms.ips[0]+" is up") ||
		!strings.Contains(out, "https://livekit.test/api/create-room") {
		t.Fatalf("deploy.sh deploy on machine 1 did not switch it to node %s with TLS:\n%s", ms.ips[0], out)
	}
	for _, svc := range []string{"redis", "livekit", "caddy"} {
		if m1.container(svc) == "" {
			t.Fatalf("machine 1 runs no %s", svc)
		}
	}
	if m1.container("livekit1") != "" {
		t.Errorf("the try-out's livekit1 is still there")
	}
	if got := strings.TrimSpace(m1.dockerExec("redis", "redis-cli", "get", "app:marker")); got != "kept" {
		t.Errorf("app:marker after the switch to host networking: %q", got)
	}
	// tryout-0 was on the try-out's node, which closed its rooms as it stopped (LiveKit's
	// shutdown); its participants join it again on machine 1.
	_, placed := m1.redisHash("room_node_map")["tryout-0"]
	t.Logf("tryout-0 still placed after the switch: %v", placed)
	held := ms.client(0, "rooms", "-rooms", "2", "-per-room", "2", "-prefix", "tryout")
	for m := held.next(90 * time.Second); m["event"] != "holding"; m = held.next(60 * time.Second) {
	}
	if got := ms.wsConnected()["tryout-0-p0"]; !reflect.DeepEqual(got, []int{0}) {
		t.Errorf("tryout-0-p0 connected on machines %v (0-based), want [0]", got)
	}
	keysBefore := m1.redisKeys()
	roomsBefore := m1.redisHash("room_node_map")
	roomRecords := m1.redisHash("rooms")
	idsBefore := containerIDs(m1, "redis", "livekit", "caddy")

	ms.in(t, "upgrade", func(t *testing.T) {
		ms.setNodes(3)
		for i, m := range ms.m {
			start := time.Now()
			out := m.mustDeploySh("deploy")
			if !strings.Contains(out, "node "+ms.ips[i]+" is up") {
				t.Fatalf("machine %d:\n%s", i+1, out)
			}
			t.Logf("machine %d (%s) deployed in %s", i+1, ms.ips[i], time.Since(start).Round(100*time.Millisecond))
		}
		for i, m := range ms.m[1:] {
			if m.container("redis") != "" {
				t.Errorf("machine %d runs a Redis; REDIS_HOST is machine 1", i+2)
			}
		}
		if got := containerIDs(m1, "redis", "livekit", "caddy"); !reflect.DeepEqual(got, idsBefore) {
			t.Errorf("machine 1's containers were replaced by the upgrade: %v, before %v", got, idsBefore)
		}
		after := m1.redisKeys()
		for k, v := range keysBefore {
			// nodes: rewritten every 2 s; rooms: LiveKit rewrites a room's record while
			// participants are in it (compared by room below); deployments: every deploy
			// records itself there.
			if k != "nodes" && k != "rooms" && k != "caddy_livekit:deployments" && v.PTTL < 0 && after[k].Content != v.Content {
				t.Errorf("key %s not kept by the upgrade", k)
			}
		}
		if got := keysOf(m1.redisHash("rooms")); !reflect.DeepEqual(got, keysOf(roomRecords)) {
			t.Errorf("rooms before the upgrade %v, after %v", keysOf(roomRecords), got)
		}
		if got := m1.redisHash("room_node_map"); !reflect.DeepEqual(got, roomsBefore) {
			t.Errorf("room_node_map before %v, after %v", roomsBefore, got)
		}
		held.t = t
		held.send("release")
		r := held.next(30 * time.Second)
		held.wait(30 * time.Second)
		t.Logf("participants held through the upgrade: %v", r)
		if r["reconnects"] != 0.0 || r["disconnects"] != 0.0 || fmt.Sprint(r["states"]) != "map[connected:4]" {
			t.Errorf("participants joined before the upgrade were disturbed: %v", r)
		}
		for i, m := range ms.m {
			out := m.mustDeploySh("verify")
			t.Logf("machine %d: %s", i+1, strings.TrimSpace(out))
		}

		// Machine 3 deployed from an .env that is not the others': verify elsewhere says so.
		m3 := ms.m[2]
		shared := m3.dir
		m3.dir = t.TempDir()
		env, err := os.ReadFile(filepath.Join(shared, ".env"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(m3.dir, ".env"), append(env, "# edited on machine 3 only\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
		m3.mustDeploySh("deploy")
		out, err := m1.deploySh("verify")
		t.Logf("deploy.sh verify on machine 1, machine 3 deployed from another .env:\n%s", out)
		if err == nil || !strings.Contains(out, "PROBLEM: machine "+ms.ips[2]+" was deployed") {
			t.Errorf("deploy.sh verify does not report machine 3's other .env")
		}
		m3.dir = shared
		m3.mustDeploySh("deploy")
		m1.mustDeploySh("verify")
	})

	ms.in(t, "spread", func(t *testing.T) {
		a := ms.client(1, "rooms", "-rooms", "3", "-per-room", "2", "-prefix", "spread-a")
		b := ms.client(2, "rooms", "-rooms", "3", "-per-room", "2", "-prefix", "spread-b")
		var identities []string
		for _, c := range []*client{a, b} {
			for m := c.next(120 * time.Second); m["event"] != "holding"; m = c.next(60 * time.Second) {
				identities = append(identities, fmt.Sprint(m["identity"]))
				if u := fmt.Sprint(m["url"]); u != "wss://livekit.test" {
					t.Errorf("create-room answered url %s, want the public wss://livekit.test", u)
				}
			}
		}
		rooms := ms.roomMachine()
		ws := ms.wsConnected()
		a.wait(30 * time.Second)
		b.wait(30 * time.Second)
		used := map[int]int{}
		for _, id := range identities {
			room := id[:strings.LastIndex(id, "-p")]
			want := rooms[room]
			if want < 0 {
				t.Errorf("room %s is not hosted by a machine's node", room)
				continue
			}
			used[want+1]++
			if got := ws[id]; len(got) != 1 || got[0] != want {
				t.Errorf("%s in room %s (machine %d): WebSocket connected on machines %v (0-based)", id, room, want+1, got)
			}
		}
		// Not all three: the rooms already there (tryout, verify's) count, wherever they are.
		t.Logf("participants per machine: %v (joined through machines 2 and 3)", used)
		if len(used) < 2 {
			t.Errorf("12 participants in 6 rooms used %d machine(s), want at least 2: %v", len(used), used)
		}
	})

	ms.in(t, "backup-restore", func(t *testing.T) {
		// From machines without Redis: deploy.sh reaches it on machine 1.
		file := filepath.Join(t.TempDir(), "backup.tar.gz")
		ms.m[2].mustDeploySh("backup", file)
		backup := readBackup(t, file)
		for _, k := range []string{"nodes", "room_node_map", "rooms", "app:marker"} {
			if _, ok := backup[k]; !ok {
				t.Errorf("backup from machine 3 lacks %s (has %d keys)", k, len(backup))
			}
		}
		rooms := m1.redisHash("room_node_map")
		m1.dockerExec("redis", "redis-cli", "del", "app:marker")
		ms.m[1].mustDeploySh("restore", file)
		if got := strings.TrimSpace(m1.dockerExec("redis", "redis-cli", "get", "app:marker")); got != "kept" {
			t.Errorf("app:marker after a restore from machine 2: %q", got)
		}
		if got := m1.redisHash("room_node_map"); !reflect.DeepEqual(got, rooms) {
			t.Errorf("room_node_map after the restore %v, before %v", got, rooms)
		}
		t.Logf("backup on machine 3 and restore on machine 2: %d keys", len(backup))
	})

	ms.in(t, "machine-lost", func(t *testing.T) {
		// Machine 1 holds Redis: keep new rooms off it, so the room to lose is on machine 2 or 3.
		m1.dockerExec("caddy", "caddy", "livekit", "drain", ms.ips[0], "--config", "/etc/caddy/Caddyfile")
		c := ms.client(0, "failover", "-room", "lost-room", "-n", "2")
		c.next(90 * time.Second)
		host := ms.roomMachine()["lost-room"]
		if host < 1 {
			t.Fatalf("lost-room is on machine %d, want 2 or 3", host+1)
		}
		cut := time.Now()
		if out, err := exec.Command("docker", "network", "disconnect", "--force", ms.lan, ms.m[host].machine).CombinedOutput(); err != nil {
			t.Fatalf("cutting machine %d off: %v %s", host+1, err, out)
		}
		c.send("kill")
		r := c.next(90 * time.Second)
		t.Logf("machine %d (host of lost-room) cut off the network; first successful rejoin through machine 1 %d ms later "+
			"(%v attempt(s), errors before: %v)", host+1, int64(r["rejoined_unix_ms"].(float64))-cut.UnixMilli(), r["attempts"], r["errors"])
		c.next(60 * time.Second) // the earlier participants
		c.wait(30 * time.Second)
		if at, msg := outOfRotation(m1, ms.ips[host]+":7880", cut); !at.IsZero() {
			t.Logf("machine 1's proxy took the node out of rotation %d ms after the cut (%q)", at.Sub(cut).Milliseconds(), msg)
		} else {
			t.Errorf("machine 1's proxy never logged %s out of rotation", ms.ips[host])
		}
		landed := ms.wsConnected()["lost-room-rejoiner"]
		if len(landed) == 0 || landed[len(landed)-1] == host {
			t.Errorf("the rejoin landed on machines %v (0-based); machine %d was cut off", landed, host+1)
		}
		out, err := m1.deploySh("verify")
		t.Logf("deploy.sh verify on machine 1 with machine %d cut off:\n%s", host+1, out)
		if err == nil || !strings.Contains(out, "PROBLEM: node "+ms.ips[host]+" ") {
			t.Errorf("deploy.sh verify does not report node %s", ms.ips[host])
		}
		if n := strings.Count(out, ms.ips[host]); n != 1 {
			t.Errorf("deploy.sh verify names node %s in %d lines, want one", ms.ips[host], n)
		}
	})
}

// One machine that clients reach from outside: its own address in NODES, host networking, TLS with
// the operator's certificate (TLS=files); a participant publishes and another receives over wss.
func TestOneMachineTLSFiles(t *testing.T) {
	ms := newMachines(t, 1)
	chain, key, ca := makeCertificate(t, ms.env.dir, "livekit.test")
	ms.ca = ca
	ms.env.set("TLS", "files")
	ms.env.set("TLS_CERT_FILE", chain)
	ms.env.set("TLS_KEY_FILE", key)
	ms.setNodes(1)
	m := ms.m[0]
	m.mustDeploySh("deploy")
	t.Logf("deploy.sh verify: %s", strings.TrimSpace(m.mustDeploySh("verify")))
	c := ms.client(0, "pubsub", "-room", "tls-files-pubsub")
	r := c.next(90 * time.Second)
	c.wait(30 * time.Second)
	t.Logf("pubsub: %v", r)
	if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") || r["url"] != "wss://livekit.test" {
		t.Fatalf("bob did not receive alice's track over wss://livekit.test: %v", r)
	}
	ws := ms.wsConnected()
	for _, id := range []string{"alice", "bob"} {
		if !reflect.DeepEqual(ws[id], []int{0}) {
			t.Errorf("%s connected on machines %v, want [0]", id, ws[id])
		}
	}
}

// makeCertificate writes a CA, and a certificate for name it signed (chain: leaf then CA) with its
// key, as an operator's own PKI would give them.
func makeCertificate(t *testing.T, dir, name string) (chain, key, ca string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test operator CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	chain, key, ca = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), filepath.Join(dir, "ca.pem")
	for f, b := range map[string][]byte{
		chain: append(pemOf("CERTIFICATE", leafDER), pemOf("CERTIFICATE", caDER)...),
		key:   pemOf("EC PRIVATE KEY", keyDER),
		ca:    pemOf("CERTIFICATE", caDER),
	} {
		if err := os.WriteFile(f, b, 0o644); err != nil { // read by Caddy in its container
			t.Fatal(err)
		}
	}
	return chain, key, ca
}

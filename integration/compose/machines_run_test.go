package compose

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Several machines with one .env: a one-machine try-out switched to host networking, then three
// machines (the upgrade keeps every Redis key and leaves the first machine's containers and
// participants alone; a machine deployed from another .env is named by verify); rooms spread over
// the machines with every WebSocket on its room's machine, through any machine's proxy, over TLS;
// backup and restore from machines without Redis; a machine cut off the network is routed around.
func TestMachines(t *testing.T) {
	r := &machinesRun{ms: newMachines(t, 3)}
	r.m1 = r.ms.m[0]
	r.tryOut(t)
	r.switchToHost(t)
	r.ms.in(t, "upgrade", r.upgrade)
	r.ms.in(t, "spread", r.spread)
	r.ms.in(t, "backup-restore", r.backupRestore)
	r.ms.in(t, "machine-lost", r.machineLost)
}

// machinesRun is TestMachines' machines and what it kept from before the upgrade.
type machinesRun struct {
	ms   *machines
	m1   *stack
	held *client // participants held through the upgrade
	// machine 1's keys, room_node_map, room records and containers before the upgrade
	keysBefore               map[string]keyState
	roomsBefore, roomRecords map[string]string
	idsBefore                map[string]string
}

// tryOut deploys the one-machine try-out: its stack on a bridge network
// (none of NODES is the machine's).
func (r *machinesRun) tryOut(t *testing.T) {
	ms, m1 := r.ms, r.m1
	ms.env.set("NODES", freeSubnet(t)+".11")
	ms.env.set("TLS", "off")
	ms.env.writeEnv()
	machine := m1.machine
	m1.machine = "" // the try-out publishes its Caddy on this host's loopback: deploy.sh runs here
	m1.mustDeploySh("deploy")
	m1.machine = machine
	m1.createRoom("CADDY_PORT", "tryout-0", "alice")
	m1.dockerExec("redis", "redis-cli", "set", "app:marker", "kept")
}

// switchToHost deploys with the machine's own address in NODES: host
// networking, TLS; Redis' volume is the same. Participants joined now are
// held through the upgrade.
func (r *machinesRun) switchToHost(t *testing.T) {
	ms, m1 := r.ms, r.m1
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
	r.held = ms.client(0, "rooms", "-rooms", "2", "-per-room", "2", "-prefix", "tryout")
	for m := r.held.next(90 * time.Second); m["event"] != "holding"; m = r.held.next(60 * time.Second) {
	}
	if got := ms.wsConnected()["tryout-0-p0"]; !reflect.DeepEqual(got, []int{0}) {
		t.Errorf("tryout-0-p0 connected on machines %v (0-based), want [0]", got)
	}
	r.keysBefore = m1.redisKeys()
	r.roomsBefore = m1.redisHash("room_node_map")
	r.roomRecords = m1.redisHash("rooms")
	r.idsBefore = containerIDs(m1, "redis", "livekit", "caddy")
}

// upgrade deploys three machines: machine 1's containers, keys and
// participants are left alone.
func (r *machinesRun) upgrade(t *testing.T) {
	ms, m1 := r.ms, r.m1
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
	if got := containerIDs(m1, "redis", "livekit", "caddy"); !reflect.DeepEqual(got, r.idsBefore) {
		t.Errorf("machine 1's containers were replaced by the upgrade: %v, before %v", got, r.idsBefore)
	}
	after := m1.redisKeys()
	for k, v := range r.keysBefore {
		// nodes: rewritten every 2 s; rooms: LiveKit rewrites a room's record while
		// participants are in it (compared by room below); deployments: every deploy
		// records itself there.
		if k != "nodes" && k != "rooms" && k != "caddy_livekit:deployments" && v.PTTL < 0 && after[k].Content != v.Content {
			t.Errorf("key %s not kept by the upgrade", k)
		}
	}
	if got := keysOf(m1.redisHash("rooms")); !reflect.DeepEqual(got, keysOf(r.roomRecords)) {
		t.Errorf("rooms before the upgrade %v, after %v", keysOf(r.roomRecords), got)
	}
	if got := m1.redisHash("room_node_map"); !reflect.DeepEqual(got, r.roomsBefore) {
		t.Errorf("room_node_map before %v, after %v", r.roomsBefore, got)
	}
	r.held.t = t
	r.held.send("release")
	res := r.held.next(30 * time.Second)
	r.held.wait(30 * time.Second)
	t.Logf("participants held through the upgrade: %v", res)
	if res["reconnects"] != 0.0 || res["disconnects"] != 0.0 || fmt.Sprint(res["states"]) != "map[connected:4]" {
		t.Errorf("participants joined before the upgrade were disturbed: %v", res)
	}
	for i, m := range ms.m {
		out := m.mustDeploySh("verify")
		t.Logf("machine %d: %s", i+1, strings.TrimSpace(out))
	}
	r.otherEnv(t)
}

// otherEnv: machine 3 deployed from an .env that is not the others': verify
// elsewhere says so.
func (r *machinesRun) otherEnv(t *testing.T) {
	ms, m1 := r.ms, r.m1
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
}

// spread: rooms spread over the machines with every WebSocket on its room's
// machine, through machines 2 and 3, over TLS.
func (r *machinesRun) spread(t *testing.T) {
	ms := r.ms
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
}

// backupRestore: backup and restore from machines without Redis.
func (r *machinesRun) backupRestore(t *testing.T) {
	ms, m1 := r.ms, r.m1
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
}

// machineLost: a machine cut off the network is routed around.
func (r *machinesRun) machineLost(t *testing.T) {
	ms, m1 := r.ms, r.m1
	// Machine 1 holds Redis: keep new rooms off it, so the room to lose is on machine 2 or 3.
	ms.drain(0, ms.ips[0])
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
	res := c.next(90 * time.Second)
	t.Logf("machine %d (host of lost-room) cut off the network; first successful rejoin through machine 1 %d ms later "+
		"(%v attempt(s), errors before: %v)", host+1, int64(res["rejoined_unix_ms"].(float64))-cut.UnixMilli(), res["attempts"], res["errors"])
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
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, ms.ips[host]+" ") || strings.Contains(line, ms.ips[host]+":") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("deploy.sh verify names node %s in %d lines, want one", ms.ips[host], n)
	}
}

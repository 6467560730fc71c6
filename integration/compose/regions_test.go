package compose

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// Two regions over three machines with one .env: machines 1 and 2 in east, machine 3 in west
// (NODE_REGIONS beside NODES, REGIONS with their lat lon). Each LiveKit registers the region
// deploy.sh wrote into its livekit.yaml; a room opened through a machine's proxy lands in that
// machine's region, and its participants' WebSockets on its node, unless the GeoIP database
// (GEOIP_DB) places its client nearer the other region; a known room stays on its node when joined
// through the other region's proxy; a region with no node taking new rooms (drained) spills over
// to the other.
func TestRegionsDeploy(t *testing.T) {
	ms := newMachines(t, 3)
	ms.env.set("NODE_REGIONS", "east,east,west")
	ms.env.set("REGIONS", "east 31.23 121.47, west 50.11 8.68")
	// a MaxMind City database that places one client address (geoClient) in the west
	geoClient := ms.env.prefix + ".200"
	db := filepath.Join(t.TempDir(), "city.mmdb")
	if err := harness.WriteGeoDB(db, map[string]mmdbtype.Map{geoClient + "/32": harness.GeoPlace(48.86, 2.35)}); err != nil {
		t.Fatal(err)
	}
	ms.env.set("GEOIP_DB", db)
	ms.setNodes(3)
	for i, m := range ms.m {
		if out := m.mustDeploySh("deploy"); !strings.Contains(out, "node "+ms.ips[i]+" is up") {
			t.Fatalf("machine %d:\n%s", i+1, out)
		}
	}
	region := map[string]string{ms.ips[0]: "east", ms.ips[1]: "east", ms.ips[2]: "west"}
	ms.in(t, "registered", func(t *testing.T) {
		for i, m := range ms.m {
			got := map[string]string{}
			for _, n := range caddyStatus(t, m).Nodes {
				got[n.IP] = n.Region
			}
			if !reflect.DeepEqual(got, region) {
				t.Errorf("machine %d's proxy sees the nodes' regions %v, want %v", i+1, got, region)
			}
		}
		t.Logf("deploy.sh status on machine 3:\n%s", ms.m[2].mustDeploySh("status"))
		if out := ms.m[1].mustDeploySh("verify"); !strings.Contains(out, "in regions east,east,west") {
			t.Errorf("deploy.sh verify on machine 2 (every node's region checked):\n%s", out)
		}
	})
	// pubsub joins alice and bob to room through machine i's proxy; bob must receive alice's track.
	pubsub := func(t *testing.T, i int, room string) int {
		c := ms.client(i, "pubsub", "-room", room)
		r := c.next(90 * time.Second)
		c.wait(30 * time.Second)
		if r["ok"] != true || !strings.HasPrefix(fmt.Sprint(r["received"]), "alice/") {
			t.Fatalf("%s through machine %d: bob did not receive alice's track: %v", room, i+1, r)
		}
		return ms.roomMachine()[room]
	}
	ms.in(t, "own-region", func(t *testing.T) {
		if host := pubsub(t, 2, "west-pubsub"); host != 2 {
			t.Errorf("west-pubsub, opened through machine 3 (west), is on machine %d", host+1)
		}
		c := ms.client(0, "rooms", "-rooms", "4", "-per-room", "1", "-prefix", "east")
		for m := c.next(120 * time.Second); m["event"] != "holding"; m = c.next(60 * time.Second) {
		}
		rooms, ws := ms.roomMachine(), ms.wsConnected()
		c.wait(30 * time.Second)
		for i := 0; i < 4; i++ {
			room := fmt.Sprintf("east-%d", i)
			if host := rooms[room]; host != 0 && host != 1 {
				t.Errorf("%s, opened through machine 1 (east), is on machine %d", room, host+1)
			} else if got := ws[room+"-p0"]; !reflect.DeepEqual(got, []int{host}) {
				t.Errorf("%s is on machine %d (0-based); its participant's WebSocket on %v", room, host, got)
			}
		}
	})
	ms.in(t, "geoip", func(t *testing.T) {
		// the client the database places in Paris opens a room through machine 1 (east)
		opts := append([]string{"--network", ms.lan, "--ip", geoClient, "--add-host", "livekit.test:" + ms.ips[0]}, ms.trustOpts()...)
		c := ms.m[0].runClient(opts, "https://livekit.test", "pubsub", "-room", "geo-paris")
		r := c.next(90 * time.Second)
		c.wait(30 * time.Second)
		if r["ok"] != true {
			t.Fatalf("geo-paris through machine 1: %v", r)
		}
		if host := ms.roomMachine()["geo-paris"]; host != 2 {
			t.Errorf("geo-paris, opened through machine 1 (east) by a client the GeoIP database places in Paris, is on machine %d; want 3 (west)", host+1)
		}
	})
	ms.in(t, "known-room", func(t *testing.T) {
		if host := pubsub(t, 0, "west-pubsub"); host != 2 {
			t.Errorf("west-pubsub joined through machine 1 (east) moved to machine %d", host+1)
		}
	})
	ms.in(t, "spill-over", func(t *testing.T) {
		ms.drain(2, ms.ips[2])
		if host := pubsub(t, 2, "west-drained"); host != 0 && host != 1 {
			t.Errorf("west-drained, opened through machine 3 with its only west node drained, is on machine %d", host+1)
		}
	})
}

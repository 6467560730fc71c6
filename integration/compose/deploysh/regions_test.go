package deploysh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two regions over one cluster: NODE_REGIONS beside NODES (same order) and REGIONS (name lat lon)
// give this machine's LiveKit its region and its proxy the regions and its own region; the
// capacity limits reach every mode's proxies. Bad values stop every command before Docker.
func TestRegions(t *testing.T) {
	const nodes = "NODES=10.0.0.11,10.0.0.12,10.1.0.11\n"
	env := nodes + "NODE_REGIONS=shanghai, shanghai,frankfurt\nREGIONS=shanghai 31.23 121.47, frankfurt 50.11 8.68\n"
	for _, c := range []struct{ this, region string }{{"10.0.0.12", "shanghai"}, {"10.1.0.11", "frankfurt"}} {
		r := deploySh(t, secrets+env+"THIS_NODE="+c.this+"\nMAX_ROOMS=200\n", []string{"FAKE_SERVICES=livekit"}, "down")
		if r.code != 0 || r.compose == nil {
			t.Fatalf("THIS_NODE=%s, deploy.sh down: exit %d (calls %q):\n%s", c.this, r.code, r.calls, r.out)
		}
		for k, want := range map[string]string{"LIVEKIT_REGION": c.region, "LB_REGION": c.region, "LB_REGION_MODE": "on",
			"LB_REGIONS": "shanghai 31.23 121.47\nfrankfurt 50.11 8.68", "MAX_ROOMS": "200", "SYSLOAD_LIMIT": "0"} {
			if got := strings.TrimSpace(r.compose[k]); got != want && !(k == "LB_REGIONS" && strings.HasPrefix(got, "shanghai 31.23 121.47")) {
				t.Errorf("THIS_NODE=%s: compose got %s=%q, want %q", c.this, k, got, want)
			}
		}
	}
	// GEOIP_DB: the proxy places new rooms by their client's address (the file is mounted)
	dir := t.TempDir()
	db := filepath.Join(dir, "city.mmdb")
	mmdb, err := os.ReadFile(filepath.Join(repoRoot(t), "livekitlb", "testdata", "geo-test.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(dir, "GeoLite2-City.tar.gz")
	for f, b := range map[string][]byte{db: mmdb, notDB: []byte("\x1f\x8b not a database")} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := deploySh(t, secrets+env+"THIS_NODE=10.0.0.11\nGEOIP_DB="+db+"\n", []string{"FAKE_SERVICES=livekit"}, "down")
	if r.compose["LB_GEOIP"] != "on" || r.compose["GEOIP_DB"] != db || r.compose["GEOIP_DB_STAMP"] == "" {
		t.Errorf("GEOIP_DB=%s: compose got LB_GEOIP=%q GEOIP_DB=%q GEOIP_DB_STAMP=%q (exit %d):\n%s", db,
			r.compose["LB_GEOIP"], r.compose["GEOIP_DB"], r.compose["GEOIP_DB_STAMP"], r.code, r.out)
	}
	// NODE_REGIONS with a trailing comma, as NODES may have
	r = deploySh(t, secrets+strings.Replace(env, "frankfurt\n", "frankfurt,\n", 1)+"THIS_NODE=10.1.0.11\n", []string{"FAKE_SERVICES=livekit"}, "down")
	if r.compose["LIVEKIT_REGION"] != "frankfurt" {
		t.Errorf("NODE_REGIONS with a trailing comma: exit %d, LIVEKIT_REGION %q:\n%s", r.code, r.compose["LIVEKIT_REGION"], r.out)
	}

	// without regions: none given to LiveKit or the proxy; limits on a one-machine stack too
	r = deploySh(t, secrets+"NODES=10.213.1.11\nSYSLOAD_LIMIT=0.8\n", []string{"FAKE_SERVICES=redis livekit1 caddy"}, "down")
	if r.compose["LB_REGION_MODE"] != "off" && r.compose["LB_REGION_MODE"] != "" || r.compose["SYSLOAD_LIMIT"] != "0.8" {
		t.Errorf("single node: compose got LB_REGION_MODE=%q SYSLOAD_LIMIT=%q (exit %d):\n%s", r.compose["LB_REGION_MODE"], r.compose["SYSLOAD_LIMIT"], r.code, r.out)
	}

	for _, c := range []struct{ env, want string }{
		{nodes + "NODE_REGIONS=shanghai,frankfurt\nREGIONS=shanghai 31 121, frankfurt 50 8", "NODE_REGIONS has 2 entries and NODES 3"},
		{nodes + "NODE_REGIONS=shanghai,,frankfurt\nREGIONS=shanghai 31 121, frankfurt 50 8", "NODE_REGIONS: node 10.0.0.12 has no region"},
		{nodes + "NODE_REGIONS=shanghai,shanghai,tokyo\nREGIONS=shanghai 31 121, frankfurt 50 8", "NODE_REGIONS: region tokyo (node 10.1.0.11) is not in REGIONS"},
		{nodes + "NODE_REGIONS=shanghai,shanghai,frankfurt", "NODE_REGIONS needs REGIONS"},
		{nodes + "REGIONS=shanghai 31 121", "REGIONS needs NODE_REGIONS"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 91 0", "REGIONS: a at '91 0': latitude -90..90"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 31.2,121.4", "REGIONS: 'a 31.2' is not: name lat lon"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 1 2, a 3 4", "REGIONS: a is listed twice"},
		{nodes + "NODE_REGIONS=a,a b,a\nREGIONS=a 1 2", "NODE_REGIONS: 'a b' is not a region name"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 1 2\nMAX_ROOMS=ten", "MAX_ROOMS: 'ten' is not a number"},
		{nodes + "SYSLOAD_LIMIT=-1", "SYSLOAD_LIMIT: '-1' is not a load per CPU"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 1 2\nGEOIP_DB=/nonexistent/city.mmdb", "GEOIP_DB: '/nonexistent/city.mmdb' is not a readable file"},
		{nodes + "GEOIP_DB=" + db, "GEOIP_DB needs NODE_REGIONS and REGIONS"},
		{nodes + "NODE_REGIONS=a,a,a\nREGIONS=a 1 2\nGEOIP_DB=" + notDB, "GEOIP_DB: '" + notDB + "' is not a MaxMind database"},
		// the one-machine stacks: one machine, one region
		{"NODES=10.213.1.11\nNODE_REGIONS=a\nREGIONS=a 1 2\nTHIS_NODE=", "NODE_REGIONS and GEOIP_DB need host networking"},
		{"NODES=10.213.1.11\nGEOIP_DB=" + db + "\nTHIS_NODE=", "NODE_REGIONS and GEOIP_DB need host networking"},
	} {
		for _, cmd := range []string{"deploy", "down"} {
			env := secrets + c.env + "\n"
			if !strings.Contains(env, "THIS_NODE=") {
				env += "THIS_NODE=10.0.0.11\n"
			}
			r := deploySh(t, env, nil, cmd)
			if r.code == 0 || !strings.Contains(r.out, "error: "+c.want) || len(r.calls) > 0 {
				t.Errorf("%q, deploy.sh %s: exit %d, calls %q, want an error %q:\n%s", c.env, cmd, r.code, r.calls, c.want, r.out)
			}
		}
	}
}

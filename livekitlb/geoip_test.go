package livekitlb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testdata/geo-test.mmdb: written by integration/harness.GeoDB (TestGeoTestdata says from what).
const geoTestDB = "testdata/geo-test.mmdb"

// geoip_db places a client by Caddy's client_ip when no trusted
// region_header says where it is; addresses it does not place, records
// without coordinates or with impossible ones, are no answer.
func TestNearFromGeoIP(t *testing.T) {
	g, err := openGeoDB(geoTestDB, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	c := Cluster{RegionHeader: "X-Client-Region", geo: g, Regions: []cluster.Region{{Name: "us-west", Lat: 37.6, Lon: -120.9}}}
	req := func(clientIP string, trusted bool, header string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/rtc", nil)
		if header != "" {
			r.Header.Set("X-Client-Region", header)
		}
		vars := map[string]any{caddyhttp.TrustedProxyVarKey: trusted, caddyhttp.ClientIPVarKey: clientIP}
		return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
	}
	for _, tc := range []struct {
		ip      string
		trusted bool
		header  string
		want    string
	}{
		{"198.51.100.7", false, "", "37.5665,126.978"},
		{"::ffff:198.51.100.7", false, "", "37.5665,126.978"}, // IPv4 in IPv6 form
		{"203.0.113.200", false, "", "37.64046607830567,-120.88"},
		{"2001:db8:1::42", false, "", "50.11,8.68"},
		{"192.0.2.1", false, "", ""},   // a record without a location
		{"192.0.2.200", false, "", ""}, // latitude 123
		{"10.1.2.3", false, "", ""},    // not in the database
		{"", false, "", ""},            // no client_ip
		{"not-an-ip", false, "", ""},
		{"198.51.100.7", false, "us-west", "37.5665,126.978"}, // a client's own header: ignored
		{"198.51.100.7", true, "us-west", "us-west"},          // a trusted edge's header wins
		{"198.51.100.7", true, "1.5,2.5", "1.5,2.5"},          // a place too
		{"198.51.100.7", true, "CN", "37.5665,126.978"},       // no region, no place: the address says
		{"198.51.100.7", true, strings.Repeat("x", maxRegionHint+1), "37.5665,126.978"},
	} {
		if got := c.Near(req(tc.ip, tc.trusted, tc.header)); got != tc.want {
			t.Errorf("client_ip %q, trusted %v, header %q: Near %q, want %q", tc.ip, tc.trusted, tc.header, got, tc.want)
		}
	}
}

// A missing or unreadable geoip_db stops provisioning with the file's name;
// a database without "City" in its type is loaded with a warning.
func TestGeoIPDBOpen(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("not a MaxMind database"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.mmdb"), garbage} {
		if _, err := openGeoDB(path, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "geoip_db "+path) {
			t.Errorf("%s: err %v, want one naming geoip_db and the file", path, err)
		}
	}
	core, logs := observer.New(zap.InfoLevel)
	if _, err := openGeoDB(geoTestDB, zap.New(core)); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("geoip_db loaded").Len(); n != 1 {
		t.Errorf("want one 'geoip_db loaded' line, got %d: %v", n, logs.All())
	}
	if n := logs.FilterMessageSnippet("not a City database").Len(); n != 0 {
		t.Errorf("a City database got a warning: %v", logs.All())
	}
}

// The modules of a config share one copy of a file, and a later load
// (a reload) after the file was replaced reads the new one; the copy a
// request holds stays usable after every module gave it back.
func TestGeoIPDBShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	seed, err := os.ReadFile(geoTestDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	a, keyA, err := loadGeoDB(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := loadGeoDB(path, zap.NewNop())
	if err != nil || a != b || keyA != keyB {
		t.Fatalf("two modules, one file: %p %p %v", a, b, err)
	}
	// replaced by rename, as geoipupdate does: another size and time
	next := path + ".new"
	if err := os.WriteFile(next, append(append([]byte{}, seed...), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	c, keyC, err := loadGeoDB(path, zap.NewNop())
	if err != nil || c == a || keyC == keyA {
		t.Fatalf("after the file was replaced: the old copy again (%v)", err)
	}
	for _, k := range []string{keyA, keyB, keyC} {
		if _, err := geoDBs.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.near(netip.MustParseAddr("198.51.100.7")); got != "37.5665,126.978" {
		t.Errorf("a copy given back, still held by a request: %q", got)
	}
}

// The database is outside input: any bytes give an error or answers in
// range, never a panic.
func FuzzGeoIPDB(f *testing.F) {
	seed, err := os.ReadFile(geoTestDB)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, []byte{198, 51, 100, 7})
	f.Add(seed[:len(seed)/2], []byte{203, 0, 113, 1})
	f.Add([]byte("\xab\xcd\xefMaxMind.com"), []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, db []byte, ip []byte) {
		r, err := maxminddb.OpenBytes(db)
		if err != nil {
			return
		}
		g := &geoDB{r: r}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			addr = netip.MustParseAddr("198.51.100.7")
		}
		near := g.near(addr)
		if near == "" {
			return
		}
		lat, lon, found := strings.Cut(near, ",")
		if !found || lat == "" || lon == "" {
			t.Fatalf("near %q", near)
		}
	})
}

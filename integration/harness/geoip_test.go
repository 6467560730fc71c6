package harness

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

var updateGeo = flag.Bool("update-geo", false, "rewrite livekitlb/testdata/geo-test.mmdb")

// The root module's geoip_db tests read livekitlb/testdata/geo-test.mmdb, written by GeoDB from
// these records (the writer stays out of the plugin's go.mod); the file must be what they give.
func TestGeoTestdata(t *testing.T) {
	b, err := GeoDB(map[string]mmdbtype.Map{
		"198.51.100.0/24": GeoPlace(37.5665, 126.978),                                   // Seoul
		"203.0.113.0/24":  GeoPlace(37.64046607830567, -120.88),                         // California
		"2001:db8:1::/48": GeoPlace(50.11, 8.68),                                        // Frankfurt
		"192.0.2.0/25":    {"country": mmdbtype.Map{"iso_code": mmdbtype.String("XX")}}, // no location
		"192.0.2.128/25":  GeoPlace(123, 8.68),                                          // not a place
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "livekitlb", "testdata", "geo-test.mmdb")
	if *updateGeo {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(path); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("%s is not what GeoDB writes (%v): go test ./harness -run GeoTestdata -update-geo", path, err)
	}
}

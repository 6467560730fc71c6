package routing

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestRegionsFromGeoIP: with geoip_db (a MaxMind City database), a new room
// goes to the region nearest its client's address when no trusted edge
// names a region: real SDK participants whose address the database places
// in Seoul open a room through the us-west proxy and it lands in seoul;
// behind a trusted edge the address is the client's, from X-Forwarded-For;
// an address the database does not place leaves the proxy's own region.
func TestRegionsFromGeoIP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "city.mmdb")
	if err := harness.WriteGeoDB(db, map[string]mmdbtype.Map{
		"127.0.0.1/32": harness.GeoPlace(37.5665, 126.978),   // Seoul: the SDK clients' address
		"127.0.0.3/32": harness.GeoPlace(37.7749, -122.4194), // San Francisco
	}); err != nil {
		t.Fatal(err)
	}
	r := startRegional(t, "geoip_db "+db)
	west, seoulProxy := r.proxy[usWest], r.proxy[seoul]

	clients := r.join(t, west.WS(), "geo-sdk", "geo-a", "geo-b")
	r.landed(t, "geo-sdk", seoul, clients)

	// an edge on trustedIP in front of the seoul proxy, forwarding the client's address
	edge := harness.StartSite(t, func(addr string) string {
		return harness.StockSite(addr, []string{seoulProxy.Addr}, "transport http {", "\tlocal_address "+trustedIP, "}")
	})
	for i, tc := range []struct {
		via      *harness.Proxy
		name     string
		from     string
		want     string
		wantNear string
	}{
		{seoulProxy, "the seoul proxy", "127.0.0.3", usWest, "San Francisco"},
		{seoulProxy, "the seoul proxy", "127.0.0.4", seoul, "not in the database: the proxy's own region"},
		{west, "the us-west proxy", "127.0.0.1", seoul, "Seoul"},
		{edge, "a trusted edge before the seoul proxy", "127.0.0.3", usWest, "San Francisco, from X-Forwarded-For"},
	} {
		room, identity := fmt.Sprintf("geo-raw-%d", i+1), fmt.Sprintf("geo-raw-%d", i+1)
		res, err := harness.RawJoinFrom(context.Background(), tc.from, http.Header{}, tc.via.WS(),
			harness.Token(room, identity), harness.SDKQuery, regionJoinTimeout)
		if err != nil {
			t.Errorf("raw join of %s from %s through %s: %v", room, tc.from, tc.name, err)
			continue
		}
		host := r.RoomNode(room)
		if got := r.region(host); res.NodeID != host || got != tc.want {
			t.Errorf("from %s (%s) through %s: room %s on %s (JoinResponse: %s), region %q; want %s",
				tc.from, tc.wantNear, tc.name, room, r.Name(host), r.Name(res.NodeID), got, tc.want)
		}
	}
}

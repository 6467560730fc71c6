package livekitlb

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// private is what "private" stands for in allow_networks.
var private = cluster.ExpandNetworks([]string{"private"})

// One placeholder can carry the whole list, and "private" keeps the defaults
// beside an operator's public node addresses.
func TestAllowNetworksFromOnePlaceholder(t *testing.T) {
	t.Setenv("LKLB_TEST_ALLOW", "private, 203.0.113.7 198.51.100.0/24")
	c, err := Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:6379"}, AllowNetworks: []string{"{env.LKLB_TEST_ALLOW}"}}.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, private...), "203.0.113.7", "198.51.100.0/24")
	if !reflect.DeepEqual(c.AllowNetworks, want) {
		t.Fatalf("allow_networks = %v, want %v", c.AllowNetworks, want)
	}
	t.Setenv("LKLB_TEST_ALLOW", "")
	if c, err = (Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:6379"}, AllowNetworks: []string{"{env.LKLB_TEST_ALLOW}"}}).Config(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.AllowNetworks, private) {
		t.Fatalf("an empty placeholder gave %v, want the defaults", c.AllowNetworks)
	}
}

// The region header counts only on requests from Caddy's trusted_proxies:
// a client cannot choose where its room goes.
func TestNearOnlyFromTrustedProxies(t *testing.T) {
	c := Cluster{RegionHeader: "X-Client-Region", Regions: []cluster.Region{{Name: "seoul", Lat: 37.5665, Lon: 126.978}}}
	req := func(trusted bool, v string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/rtc", nil)
		r.Header.Set("X-Client-Region", v)
		vars := map[string]any{caddyhttp.TrustedProxyVarKey: trusted}
		return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
	}
	for _, tc := range []struct {
		trusted bool
		value   string
		want    string
	}{
		{true, "seoul", "seoul"},
		{true, " 37.5,126.9 ", "37.5,126.9"},
		{false, "seoul", ""},
		{true, strings.Repeat("x", maxRegionHint+1), ""},
		{true, "atlantis", ""}, // neither a listed region nor a place
	} {
		if got := c.Near(req(tc.trusted, tc.value)); got != tc.want {
			t.Errorf("trusted %v, %q: Near %q, want %q", tc.trusted, tc.value, got, tc.want)
		}
	}
	if got := (Cluster{}).Near(req(true, "seoul")); got != "" {
		t.Errorf("without region_header: %q", got)
	}
}

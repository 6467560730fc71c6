package livekitlb

import (
	"reflect"
	"testing"

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

package livekitlb

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	return out, err
}

func TestLiveKitLBDirective(t *testing.T) {
	out, err := adapt(t, `:8080 {
	livekit_lb 127.0.0.1:6379 {
		node_port 7881
		node_address 203.0.113.4 10.0.0.4:7880
		load_measure rooms
		fail_duration 2s
		lb_retries 5
		header_up X-Via caddy
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"handler":"livekit_lb"`, `"address":"127.0.0.1:6379"`, `"node_port":7881`,
		`"node_addresses":{"203.0.113.4":"10.0.0.4:7880"}`, `"load_measure":"rooms"`, `"fail_duration":2000000000`,
		`"dynamic_upstreams":{"source":"livekit"}`, `"selection_policy":{"policy":"first"}`,
		`"retries":5`, `"X-Via":["caddy"]`, `"stream_close_delay":600000000000`, `"dial_timeout":2000000000`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted JSON lacks %s\n%s", want, out)
		}
	}
}

// Regions and capacity limits adapt into LiveKit's shapes.
func TestRegionsAndLimits(t *testing.T) {
	out, err := adapt(t, `:8080 {
	livekit_lb 127.0.0.1:6379 {
		sysload_limit 0.85
		max_rooms 200
		max_clients 3000
		regions {
			us-west 37.64 -120.88
			seoul 37.5665 126.978
		}
		region seoul
		region_header X-Client-Region
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sysload_limit":0.85`, `"max_rooms":200`, `"max_clients":3000`,
		`"regions":[{"lat":37.64,"lon":-120.88,"name":"us-west"},{"lat":37.5665,"lon":126.978,"name":"seoul"}]`,
		`"region":"seoul"`, `"region_header":"X-Client-Region"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted JSON lacks %s\n%s", want, out)
		}
	}
}

// node_addresses takes the list deploy.sh puts in NODE_ADDRESSES (pairs
// separated by spaces or commas, Caddy expanding {$VAR} into several tokens),
// and nothing when the variable is empty.
func TestNodeAddressesList(t *testing.T) {
	for list, want := range map[string]string{
		"203.0.113.4=10.0.0.4:7880 203.0.113.5=10.0.0.5:7880,203.0.113.6=10.0.0.6:7880": `"node_addresses":{"203.0.113.4":"10.0.0.4:7880","203.0.113.5":"10.0.0.5:7880","203.0.113.6":"10.0.0.6:7880"}`,
		"": `"handler":"livekit_lb"`,
	} {
		t.Setenv("NODE_ADDRESSES", list)
		out, err := adapt(t, ":8080 {\n livekit_lb 127.0.0.1:6379 {\n  node_addresses {$NODE_ADDRESSES}\n  api_key k\n }\n}")
		if err != nil {
			t.Fatalf("%q: %v", list, err)
		}
		if !strings.Contains(string(out), want) || (list == "" && strings.Contains(string(out), "node_addresses")) {
			t.Errorf("NODE_ADDRESSES=%q: adapted JSON lacks %s\n%s", list, want, out)
		}
	}
}

func TestLiveKitLBDirectiveErrors(t *testing.T) {
	for name, body := range map[string]string{
		"no redis":           `livekit_lb`,
		"bad measure":        "livekit_lb 127.0.0.1:6379 {\n load_measure fastest\n}",
		"static upstreams":   "livekit_lb 127.0.0.1:6379 {\n to 10.0.0.1:7880\n}",
		"bad duration":       "livekit_lb 127.0.0.1:6379 {\n stale_after soon\n}",
		"bad node_address":   "livekit_lb 127.0.0.1:6379 {\n node_address 10.0.0.1\n}",
		"bad node_addresses": "livekit_lb 127.0.0.1:6379 {\n node_addresses 203.0.113.4 10.0.0.4:7880\n}",
		"bad sysload_limit":  "livekit_lb 127.0.0.1:6379 {\n sysload_limit high\n}",
		"bad max_rooms":      "livekit_lb 127.0.0.1:6379 {\n max_rooms -1\n}",
		"bad region entry":   "livekit_lb 127.0.0.1:6379 {\n regions {\n seoul 37.5\n }\n}",
		"bad region lat":     "livekit_lb 127.0.0.1:6379 {\n regions {\n seoul north 126.9\n }\n}",
		"unknown redis opt":  "livekit_lb {\n redis {\n address a:1\n colour blue\n }\n}",
		"two redis modes":    "livekit_lb {\n redis {\n address a:1\n cluster_addresses b:1 c:1\n }\n}",
		"sentinel no name":   "livekit_lb {\n redis {\n sentinel_addresses a:1\n }\n}",
		"bad rp subdir":      "livekit_lb 127.0.0.1:6379 {\n lb_retries many\n}",
	} {
		if _, err := adapt(t, ":8080 {\n"+body+"\n}"); err == nil {
			t.Errorf("%s: adapted without error", name)
		}
	}
}

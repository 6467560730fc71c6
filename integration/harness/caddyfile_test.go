package harness_test

import (
	"strings"
	"testing"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// TestSites: the Caddyfile builders write the blocks the tests rely on.
func TestSites(t *testing.T) {
	lb := harness.LB{Redis: "127.0.0.1:6379", Options: []string{"load_measure rooms"}}
	want := "http://127.0.0.1:8080 {\n" +
		"\theader >X-Node {http.vars.livekit.node}\n" +
		"\tlivekit_lb 127.0.0.1:6379 {\n" +
		"\t\tallow_networks 127.0.0.0/8\n" +
		"\t\tapi_key " + harness.APIKey + "\n" +
		"\t\tapi_secret " + harness.APISecret + "\n" +
		"\t\tload_measure rooms\n" +
		"\t}\n}\n"
	if got := harness.LBSite("127.0.0.1:8080", lb, "header >X-Node {http.vars.livekit.node}"); got != want {
		t.Errorf("LBSite:\n%s\nwant:\n%s", got, want)
	}

	block := harness.LBSite("127.0.0.1:8080", harness.LB{RedisBlock: []string{"address 127.0.0.1:6379"}})
	if !strings.Contains(block, "\tlivekit_lb {\n\t\tredis {\n\t\t\taddress 127.0.0.1:6379\n\t\t}\n") {
		t.Errorf("LBSite with a redis block:\n%s", block)
	}

	token := harness.TokenSite("127.0.0.1:8080", lb, "auth_key k")
	for _, s := range []string{"handle /api/create-room {\n\t\tlivekit_token {\n\t\t\tredis 127.0.0.1:6379\n",
		"\t\t\tload_measure rooms\n\t\t\tauth_key k\n\t\t}\n\t}\n", "handle {\n\t\tlivekit_lb {\n\t\t\tredis 127.0.0.1:6379\n"} {
		if !strings.Contains(token, s) {
			t.Errorf("TokenSite lacks %q:\n%s", s, token)
		}
	}
	if strings.Count(token, "auth_key") != 1 {
		t.Errorf("TokenSite: auth_key outside livekit_token:\n%s", token)
	}

	stock := harness.StockSite("127.0.0.1:8081", []string{"127.0.0.2:7880", "127.0.0.3:7880"}, "lb_policy round_robin")
	if want := "http://127.0.0.1:8081 {\n\treverse_proxy 127.0.0.2:7880 127.0.0.3:7880 {\n\t\tlb_policy round_robin\n\t}\n}\n"; stock != want {
		t.Errorf("StockSite:\n%s\nwant:\n%s", stock, want)
	}
}

package deploysh

import (
	"strings"
	"testing"
)

// Behind 1:1 NAT (PUBLIC_IPS beside NODES, same order): this machine's LiveKit advertises its public
// address, every proxy maps each public address to its private one, and no public address is
// added to the proxies' allow-list.
func TestPublicIPs(t *testing.T) {
	const nodes = "NODES=10.0.0.11,10.0.0.12,10.0.0.13\n"
	for _, c := range []struct {
		env, nodeIP, addresses string
	}{
		{"PUBLIC_IPS=203.0.113.11, 203.0.113.12,203.0.113.13\nTHIS_NODE=10.0.0.12", "203.0.113.12",
			"203.0.113.11=10.0.0.11:7880 203.0.113.12=10.0.0.12:7880 203.0.113.13=10.0.0.13:7880"},
		// an empty entry: that node has no NAT
		{"PUBLIC_IPS=,203.0.113.12,\nTHIS_NODE=10.0.0.11", "10.0.0.11", "203.0.113.12=10.0.0.12:7880"},
		{"PUBLIC_IPS=\nTHIS_NODE=10.0.0.13", "10.0.0.13", ""},
	} {
		r := deploySh(t, secrets+nodes+c.env+"\n", []string{"FAKE_SERVICES=livekit"}, "down")
		if r.code != 0 || r.compose == nil {
			t.Fatalf("%q, deploy.sh down: exit %d (calls %q):\n%s", c.env, r.code, r.calls, r.out)
		}
		for k, want := range map[string]string{"NODE_IP": c.nodeIP, "NODE_ADDRESSES": c.addresses, "ALLOW_NETWORKS": "private"} {
			if got := r.compose[k]; got != want {
				t.Errorf("%q: compose got %s=%q, want %q", c.env, k, got, want)
			}
		}
	}
	for _, c := range []struct{ env, want string }{
		{nodes + "PUBLIC_IPS=203.0.113.11,203.0.113.12", "PUBLIC_IPS has 2 entries and NODES 3"},
		{nodes + "PUBLIC_IPS=203.0.113.11,203.0.113.12,203.0.113.300", "PUBLIC_IPS: '203.0.113.300' is not an IPv4 address"},
		{nodes + "PUBLIC_IPS=203.0.113.11,203.0.113.11,203.0.113.13", "PUBLIC_IPS: 203.0.113.11 is listed twice, or is also in NODES"},
		{nodes + "PUBLIC_IPS=203.0.113.11,10.0.0.11,203.0.113.13", "PUBLIC_IPS: 10.0.0.11 is listed twice, or is also in NODES"},
		// the one-machine stacks: NODES are container addresses, there is no machine behind NAT
		{"NODES=10.213.1.11\nPUBLIC_IPS=203.0.113.11", "PUBLIC_IPS needs host networking"},
	} {
		for _, cmd := range []string{"deploy", "down"} {
			r := deploySh(t, secrets+c.env+"\nTHIS_NODE=\n", nil, cmd)
			if r.code == 0 || !strings.Contains(r.out, "error: "+c.want) || len(r.calls) > 0 {
				t.Errorf("%q, deploy.sh %s: exit %d, calls %q, want an error %q:\n%s", c.env, cmd, r.code, r.calls, c.want, r.out)
			}
		}
	}
}

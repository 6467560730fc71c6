package livekitcmd

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

func verifyCommand() *cobra.Command {
	verify := &cobra.Command{Use: "verify", Short: "Checks Redis and the nodes", Args: cobra.NoArgs, RunE: run(verifyCmd)}
	f := verify.Flags()
	f.String("nodes", os.Getenv("NODES"), "Comma-separated node IPs that must be registered and serving (default $NODES)")
	f.String("public-ips", os.Getenv("PUBLIC_IPS"), "Comma-separated public addresses of --nodes behind 1:1 NAT, same order, empty for a node without (default $PUBLIC_IPS): each must be registered under it and dialled on its --nodes address")
	f.String("regions", os.Getenv("NODE_REGIONS"), "Comma-separated regions of --nodes, same order (default $NODE_REGIONS): each must register its own (LiveKit's region:)")
	f.String("machine", "", "This machine's name in the deployment records (its own record is not compared)")
	f.String("digest", "", "This machine's configuration digest: a machine of --nodes recorded with another is a problem")
	f.StringArray("create-room", nil, "Create-room endpoint URL to create a room at (key from $CREATE_ROOM_KEY), then validate a join with its token at the same origin's /rtc/validate; repeatable")
	f.String("dial", "", "host:port to connect to for the --create-room URLs (their host still names the site and its certificate)")
	f.String("ca-file", "", "PEM file of the CAs to trust for https --create-room URLs and --turn names, instead of the system's")
	f.StringArray("turn", nil, "TURN_NAME=NODE_IP: a TLS handshake on 443 (--dial) under the node's TURN name, then a TURN allocation relayed by that node (keys from $LIVEKIT_API_KEY, $LIVEKIT_API_SECRET); repeatable")
	return verify
}

// verifyCmd prints one line per problem and fails if there is any.
func verifyCmd(ctx context.Context, e *env) error {
	flags := e.cmd.Flags()
	want, _ := flags.GetString("nodes")
	public, _ := flags.GetString("public-ips")
	regions, _ := flags.GetString("regions")
	machine, _ := flags.GetString("machine")
	digest, _ := flags.GetString("digest")
	endpoints, _ := flags.GetStringArray("create-room")
	dial, _ := flags.GetString("dial")
	caFile, _ := flags.GetString("ca-file")
	turns, _ := flags.GetStringArray("turn")
	if machine != "" && digest == "" {
		return fmt.Errorf("--machine needs --digest")
	}
	nodes := splitList(want)
	expected, err := expectedNodes(nodes, public, regions)
	if err != nil {
		return err
	}
	problems := Verify(ctx, e.reg, expected)
	if digest != "" {
		problems = append(problems, deploymentProblems(ctx, e.reg, nodes, machine, digest)...)
	}
	if len(endpoints) > 0 {
		t, err := newTryJoin(os.Getenv("CREATE_ROOM_KEY"), dial, caFile)
		if err != nil {
			return err
		}
		for i, u := range endpoints {
			if p := t.check(ctx, u, i); p != "" {
				problems = append(problems, p)
			}
		}
	}
	if len(turns) > 0 {
		t, err := newTryTURN(os.Getenv("LIVEKIT_API_KEY"), os.Getenv("LIVEKIT_API_SECRET"), dial, caFile)
		if err != nil {
			return err
		}
		for _, spec := range turns {
			if p := t.check(ctx, spec); p != "" {
				problems = append(problems, p)
			}
		}
	}
	if e.json {
		if problems == nil {
			problems = []string{}
		}
		if err := writeJSON(e.out, map[string]any{"ok": len(problems) == 0, "problems": problems}); err != nil {
			return err
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(e.out, "PROBLEM: "+p)
		}
		if len(problems) == 0 {
			ok := fmt.Sprintf("OK: Redis reachable, %d node(s) serving and answering", len(e.reg.Status()))
			if len(endpoints) > 0 {
				ok += fmt.Sprintf(", create-room and a join through %d proxy URL(s)", len(endpoints))
			}
			if len(turns) > 0 {
				ok += fmt.Sprintf(", TURN over TLS on %d node(s)", len(turns))
			}
			fmt.Fprintln(e.out, ok)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s)", len(problems))
	}
	return nil
}

// Expected is a node of NODES as verify checks it: the address it registers
// (its public one behind 1:1 NAT, else its NODES address), the host the
// proxy must dial, never the public one, and the region it must register
// ("": not checked).
type Expected struct{ Registers, Dials, Region string }

// expectedNodes pairs NODES with PUBLIC_IPS (an empty entry: no NAT for that
// node) and NODE_REGIONS, each in NODES' order.
func expectedNodes(nodes []string, public, regions string) ([]Expected, error) {
	pub, err := parallel("--public-ips", public, len(nodes), "empty for a node without NAT")
	if err != nil {
		return nil, err
	}
	reg, err := parallel("--regions", regions, len(nodes), "each node's region")
	if err != nil {
		return nil, err
	}
	out := make([]Expected, len(nodes))
	for i, n := range nodes {
		out[i] = Expected{Registers: n, Dials: n}
		if pub != nil && pub[i] != "" {
			out[i].Registers = pub[i]
		}
		if reg != nil {
			out[i].Region = reg[i]
		}
	}
	return out, nil
}

// parallel splits a list given beside --nodes, one entry per node, trimmed;
// nil when it is empty.
func parallel(flag, list string, n int, hint string) ([]string, error) {
	if strings.Trim(list, " ,") == "" {
		return nil, nil
	}
	v := strings.Split(list, ",")
	if len(v) != n {
		return nil, fmt.Errorf("%s has %d entries and --nodes %d: give one per node, in the same order (%s)", flag, len(v), n, hint)
	}
	for i := range v {
		v[i] = strings.TrimSpace(v[i])
	}
	return v, nil
}

// Verify checks Redis and the nodes as an operator would before trusting
// the cluster: want are the nodes that must be registered and serving.
func Verify(ctx context.Context, reg *cluster.Cluster, want []Expected) []string {
	var problems []string
	if err := reg.Ping(ctx); err != nil {
		return []string{err.Error()}
	}
	if policy, err := reg.RedisSetting(ctx, "maxmemory-policy"); err == nil && policy != "noeviction" && !strings.HasPrefix(policy, "volatile-") {
		problems = append(problems, fmt.Sprintf("Redis maxmemory-policy is %s: it can evict LiveKit's node registrations and room placements; use noeviction", policy))
	}
	if pass, err := reg.RedisSetting(ctx, "requirepass"); err == nil && pass == "" {
		if bind, err := reg.RedisSetting(ctx, "bind"); err == nil && !loopbackOnly(bind) {
			problems = append(problems, fmt.Sprintf("Redis has no password and listens on %q, reachable from other machines", bind))
		}
	}
	for _, b := range reg.BadNodes() {
		problems = append(problems, ignoredEntry(b))
	}
	nodes := reg.Status()
	if len(nodes) == 0 {
		problems = append(problems, "no LiveKit node is registered in Redis")
	}
	byIP := map[string]cluster.NodeStatus{}
	reported := map[string]bool{} // IPs with a line already: one line per problem node
	for _, n := range nodes {
		if prev, ok := byIP[n.IP]; !ok || (n.Routable && !prev.Routable) {
			byIP[n.IP] = n
		}
	}
	for _, n := range nodes {
		problem := ""
		switch {
		case n.Dial == "":
			problem = "never dialled: " + n.NotDialled
		case n.Stale && n.State == "SERVING":
			// a crashed node's entry stays until a node restarts (RemoveDeadNodes)
			if live := byIP[n.IP]; !live.Routable || live.ID == n.ID {
				problem = fmt.Sprintf("stats %.0fs old, node not updating", n.StatsAge)
			}
		case n.Unreachable:
			problem = "not answering on " + n.Dial
		case n.State != "SERVING":
			problem = "state " + n.State
		}
		if problem != "" {
			problems = append(problems, fmt.Sprintf("node %s (%s): %s", n.IP, n.ID, problem))
			reported[n.IP] = true
		}
	}
	for _, w := range want {
		n, ok := byIP[w.Registers]
		_, private := byIP[w.Dials]
		switch {
		case !ok && w.Registers != w.Dials && private:
			problems = append(problems, fmt.Sprintf("node %s registers its private address: its node_ip must be its public address %s "+
				"(PUBLIC_IPS), or clients outside get no media", w.Dials, w.Registers))
		case !ok && w.Registers != w.Dials:
			problems = append(problems, fmt.Sprintf("node %s from NODES is not registered in Redis under its public address %s", w.Dials, w.Registers))
		case !ok:
			problems = append(problems, fmt.Sprintf("node %s from NODES is not registered in Redis", w.Registers))
		case reported[w.Registers]:
		case !n.Routable:
			problems = append(problems, fmt.Sprintf("node %s from NODES is registered but not routable (state %s)", w.Registers, n.State))
		case w.Registers != w.Dials && dialHost(n.Dial) != w.Dials:
			problems = append(problems, fmt.Sprintf("node %s (%s) is dialled on %s, not on its NODES address %s (node_addresses)", w.Registers, n.ID, n.Dial, w.Dials))
		case w.Region != "" && n.Region != w.Region:
			problems = append(problems, fmt.Sprintf("node %s (%s) registers region %q and NODE_REGIONS gives it %q: deploy it again with this .env "+
				"(the proxies place new rooms by the region a node registers)", w.Dials, n.ID, n.Region, w.Region))
		}
	}
	return problems
}

func dialHost(dial string) string {
	host, _, err := net.SplitHostPort(dial)
	if err != nil {
		return dial
	}
	return host
}

func loopbackOnly(bind string) bool {
	for _, a := range strings.Fields(bind) {
		a = strings.TrimPrefix(a, "-")
		if !strings.HasPrefix(a, "127.") && a != "::1" && a != "localhost" {
			return false
		}
	}
	return bind != ""
}

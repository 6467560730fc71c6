// Package livekitcmd adds `caddy livekit ...`: the cluster behind
// livekit_lb as people and scripts see it, read from the same Redis.
package livekitcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "livekit",
		Usage: "status|rooms|drain|undrain|verify|backup|restore [--config <Caddyfile>] [--redis <host:port>] [--json]",
		Short: "Shows and manages the LiveKit cluster behind livekit_lb",
		Long: `
Reads LiveKit's Redis as livekit_lb does. The cluster comes from the first
livekit_lb or livekit_token in --config (placeholders resolve as in Caddy, so
{env.REDIS_PASSWORD} needs the variable), or from --redis (password from
REDIS_PASSWORD).

  status          every node: state, load, rooms, clients, stats age, and
                  whether the proxy would route to it (it probes them)
  rooms [--node]  rooms and the node that hosts each
  drain NODE      no new rooms on NODE (id or IP) from any proxy; its rooms stay
  undrain NODE    take NODE back
  verify          one line per problem; exit status 1 if any
  backup FILE     every key of LiveKit's Redis DB (DUMP format, with TTLs)
  restore FILE    put a backup back, into the same or a fresh Redis
`,
		CobraFunc: func(cmd *cobra.Command) {
			// cobra shows the help and exits 0 for an unknown verb of a
			// command that has no Run of its own: a typo would look fine
			cmd.Args = cobra.ArbitraryArgs
			cmd.RunE = func(c *cobra.Command, args []string) error {
				if len(args) == 0 {
					_ = c.Help()
					return errors.New("a command is required")
				}
				return fmt.Errorf("unknown command %q; run 'caddy livekit --help'", args[0])
			}
			cmd.PersistentFlags().StringP("config", "c", "", "Caddy config file with a livekit_lb or livekit_token")
			cmd.PersistentFlags().StringP("adapter", "a", "", "Config adapter (default: by file name)")
			cmd.PersistentFlags().String("redis", "", "Redis host:port, instead of --config")
			cmd.PersistentFlags().String("allow-networks", "", "Comma-separated CIDRs the node addresses may be in")
			cmd.PersistentFlags().Bool("json", false, "JSON output for scripts")
			rooms := &cobra.Command{Use: "rooms", Short: "Lists rooms and their nodes", RunE: run(roomsCmd)}
			rooms.Flags().String("node", "", "Only rooms on this node id")
			verify := &cobra.Command{Use: "verify", Short: "Checks Redis and the nodes", RunE: run(verifyCmd)}
			verify.Flags().String("nodes", os.Getenv("NODES"), "Comma-separated node IPs that must be registered and serving (default $NODES)")
			cmd.AddCommand(
				&cobra.Command{Use: "status", Short: "Shows every node", RunE: run(statusCmd)},
				rooms,
				&cobra.Command{Use: "drain NODE", Short: "No new rooms on NODE", Args: cobra.ExactArgs(1), RunE: run(drainCmd(true))},
				&cobra.Command{Use: "undrain NODE", Short: "New rooms on NODE again", Args: cobra.ExactArgs(1), RunE: run(drainCmd(false))},
				verify,
			)
			cmd.AddCommand(backupCommands()...)
		},
	})
}

type env struct {
	cmd  *cobra.Command
	args []string
	reg  *cluster.Cluster
	out  io.Writer
	json bool
}

// run opens the cluster, runs f, and turns a returned error into exit 1.
func run(f func(context.Context, *env) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		c, err := clusterFrom(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		reg, err := open(ctx, c)
		if err != nil {
			return err
		}
		defer reg.Close()
		asJSON, _ := cmd.Flags().GetBool("json")
		return f(ctx, &env{cmd: cmd, args: args, reg: reg, out: cmd.OutOrStdout(), json: asJSON})
	}
}

// open connects to the cluster and takes one look: the nodes read, Redis
// answering, every node probed.
func open(ctx context.Context, c livekitlb.Cluster) (*cluster.Cluster, error) {
	reg, err := c.Open(zap.NewNop())
	if err != nil {
		return nil, err
	}
	reg.Ready(ctx)
	if err := reg.Ping(ctx); err != nil {
		_ = reg.Close()
		return nil, err
	}
	reg.ProbeNow(ctx)
	return reg, nil
}

func statusCmd(_ context.Context, e *env) error {
	nodes := e.reg.Status()
	if e.json {
		return writeJSON(e.out, livekitlb.NodesView{RedisReachable: e.reg.RedisReachable(), Nodes: nodes, Ignored: e.reg.BadNodes()})
	}
	w := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tADDRESS\tSTATE\tROUTABLE\tSYSLOAD\tROOMS\tCLIENTS\tSTATS AGE")
	for _, n := range nodes {
		state := n.State
		if n.Drained {
			state += " (drained)"
		}
		routable := "yes"
		switch {
		case n.Dial == "":
			routable = "no: outside allow_networks"
		case n.Unreachable:
			routable = "no: not answering"
		case !n.Routable:
			routable = "no"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f\t%d\t%d\t%.1fs\n", n.ID, orIP(n), state, routable, n.Sysload, n.Rooms, n.Clients, n.StatsAge)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(w, "(no nodes registered in Redis)")
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, b := range e.reg.BadNodes() {
		fmt.Fprintln(e.out, "PROBLEM: "+ignoredEntry(b))
	}
	return nil
}

func orIP(n cluster.NodeStatus) string {
	if n.Dial != "" {
		return n.Dial
	}
	return n.IP
}

func roomsCmd(ctx context.Context, e *env) error {
	node, _ := e.cmd.Flags().GetString("node")
	var all []livekitlb.RoomPlacement
	var cursor uint64
	for {
		page, next, err := e.reg.Rooms(ctx, cursor, 1000)
		if err != nil {
			return err
		}
		for room, id := range page {
			if node == "" || node == id {
				all = append(all, livekitlb.RoomPlacement{Room: room, Node: id})
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Room < all[j].Room })
	if e.json {
		if all == nil {
			all = []livekitlb.RoomPlacement{}
		}
		return writeJSON(e.out, livekitlb.RoomsView{Rooms: all})
	}
	w := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROOM\tNODE")
	for _, r := range all {
		fmt.Fprintf(w, "%s\t%s\n", r.Room, r.Node)
	}
	fmt.Fprintf(w, "(%d rooms)\n", len(all))
	return w.Flush()
}

func drainCmd(on bool) func(context.Context, *env) error {
	return func(ctx context.Context, e *env) error {
		if err := knownNode(e.reg, e.args[0], on); err != nil {
			return err
		}
		if err := e.reg.Drain(ctx, e.args[0], on); err != nil {
			return err
		}
		verb := "drained: takes no new rooms; its rooms stay"
		if !on {
			verb = "undrained: takes new rooms again"
		}
		if e.json {
			return writeJSON(e.out, map[string]any{"node": e.args[0], "drained": on})
		}
		fmt.Fprintf(e.out, "%s %s\n", e.args[0], verb)
		return nil
	}
}

// knownNode refuses to drain a node id or IP that no node in Redis has (a
// typo would drain nothing and say it did); undrain also takes a name that
// is drained now, so that the drain of a node gone for good can be lifted.
func knownNode(reg *cluster.Cluster, node string, drain bool) error {
	if strings.TrimSpace(node) == "" {
		return errors.New("name a node by its id (ND_...) or IP")
	}
	for _, n := range reg.Status() {
		if n.ID == node || n.IP == node {
			return nil
		}
	}
	if !drain && reg.IsDrained(node) {
		return nil
	}
	return fmt.Errorf("no LiveKit node with id or IP %q is registered in Redis ('caddy livekit status' lists them)", node)
}

// verifyCmd prints one line per problem and fails if there is any.
func verifyCmd(ctx context.Context, e *env) error {
	want, _ := e.cmd.Flags().GetString("nodes")
	problems := Verify(ctx, e.reg, splitList(want))
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
			fmt.Fprintf(e.out, "OK: Redis reachable, %d node(s) serving and answering\n", len(e.reg.Status()))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s)", len(problems))
	}
	return nil
}

// Verify checks Redis and the nodes as an operator would before trusting
// the cluster: wantIPs are node IPs that must be registered and serving.
func Verify(ctx context.Context, reg *cluster.Cluster, wantIPs []string) []string {
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
			problem = "address outside allow_networks, never dialled"
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
	for _, ip := range wantIPs {
		n, ok := byIP[ip]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("node %s from NODES is not registered in Redis", ip))
		case !n.Routable && !reported[ip]:
			problems = append(problems, fmt.Sprintf("node %s from NODES is registered but not routable (state %s)", ip, n.State))
		}
	}
	return problems
}

func ignoredEntry(b cluster.BadNode) string {
	return fmt.Sprintf("nodes entry %s ignored: %s", b.Field, b.Reason)
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

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

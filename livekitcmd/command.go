// Package livekitcmd adds `caddy livekit ...`: the cluster behind
// livekit_lb as people and scripts see it, read from the same Redis.
package livekitcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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
		Usage: "status|rooms|drain|undrain|verify|deployment|backup|restore [--config <Caddyfile>] [--redis <host:port>] [--json]",
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
  verify          one line per problem; exit status 1 if any. Optionally
                  compares this machine's deployment with the others'
                  (--machine, --digest) and creates a room and validates a
                  join through a proxy (--create-room URL)
  deployment record MACHINE DIGEST
                  records the configuration digest MACHINE runs
  deployment list every machine's recorded digest
  backup FILE     every key of LiveKit's Redis DB (DUMP format, with TTLs)
  restore FILE    put a backup back, into the same or a fresh Redis
`,
		CobraFunc: setup,
	})
}

// setup fills in `caddy livekit`'s flags and verbs (Caddy makes the
// command itself; the tests make their own).
func setup(cmd *cobra.Command) {
	// cobra shows the help and exits 0 for an unknown verb of a command
	// that has no Run of its own: a typo would look fine
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
	cmd.AddCommand(
		&cobra.Command{Use: "status", Short: "Shows every node", RunE: run(statusCmd)},
		rooms,
		&cobra.Command{Use: "drain NODE", Short: "No new rooms on NODE", Args: cobra.ExactArgs(1), RunE: run(drainCmd(true))},
		&cobra.Command{Use: "undrain NODE", Short: "New rooms on NODE again", Args: cobra.ExactArgs(1), RunE: run(drainCmd(false))},
		verifyCommand(),
		deploymentCommand(),
	)
	cmd.AddCommand(backupCommands()...)
}

type env struct {
	cmd  *cobra.Command
	args []string
	reg  *cluster.Cluster
	out  io.Writer
	json bool
}

// run opens the cluster, takes one look at it (open), runs f, and turns a
// returned error into exit 1.
func run(f func(context.Context, *env) error) func(*cobra.Command, []string) error {
	return runWith(true, 30*time.Second, f)
}

// runWith is run with or without the look at the nodes (a backup, a
// restore or a deployment record needs only Redis: the cluster may be
// down), and f's time limit.
func runWith(look bool, limit time.Duration, f func(context.Context, *env) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		c, err := clusterFrom(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), limit)
		defer cancel()
		var reg *cluster.Cluster
		if look {
			reg, err = open(ctx, c)
		} else {
			reg, err = c.Open(zap.NewNop())
		}
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

package livekitcmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// Every machine of a deployment should run the same configuration. deploy.sh
// records, per machine, a digest of the configuration it started there (in
// the proxy's Redis hash caddy_livekit:deployments); verify --digest
// compares this machine's with the others'. The digest is the caller's:
// the files it covers (deploy.sh: .env and the Caddyfile) live on the
// machine, not in the container that runs this command.

func deploymentCommand() *cobra.Command {
	d := &cobra.Command{
		Use:   "deployment",
		Short: "Records and lists the configuration digest each machine runs",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			return errors.New("deployment needs a command: record or list")
		},
	}
	d.AddCommand(
		&cobra.Command{
			Use:   "record MACHINE DIGEST",
			Short: "Records that MACHINE now runs the configuration DIGEST names",
			Args:  cobra.ExactArgs(2),
			RunE:  runWith(false, 30*time.Second, recordCmd),
		},
		&cobra.Command{
			Use:   "list",
			Short: "Every machine's recorded digest and when it was recorded",
			Args:  cobra.NoArgs,
			RunE:  runWith(false, 30*time.Second, listCmd),
		},
	)
	return d
}

// deployment is one machine's record: "DIGEST TIME" in Redis.
type deployment struct {
	Machine string `json:"machine"`
	Digest  string `json:"digest"`
	At      string `json:"at,omitempty"` // RFC 3339, UTC
}

func parseDeployment(machine, record string) deployment {
	digest, at, _ := strings.Cut(strings.TrimSpace(record), " ")
	return deployment{Machine: machine, Digest: digest, At: strings.TrimSpace(at)}
}

func (d deployment) record() string { return d.Digest + " " + d.At }

// deployments returns every record, sorted by machine.
func deployments(ctx context.Context, reg *cluster.Cluster) ([]deployment, error) {
	m, err := reg.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]deployment, 0, len(m))
	for machine, record := range m {
		out = append(out, parseDeployment(machine, record))
	}
	slices.SortFunc(out, func(a, b deployment) int { return strings.Compare(a.Machine, b.Machine) })
	return out, nil
}

func recordCmd(ctx context.Context, e *env) error {
	d := deployment{Machine: e.args[0], Digest: e.args[1], At: time.Now().UTC().Format(time.RFC3339)}
	if strings.TrimSpace(d.Machine) == "" || d.Digest == "" || strings.ContainsAny(d.Digest, " \t\n") {
		return fmt.Errorf("name a machine and give a digest without spaces")
	}
	if err := e.reg.RecordDeployment(ctx, d.Machine, d.record()); err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.out, d)
	}
	fmt.Fprintf(e.out, "recorded: machine %s runs %s (%s)\n", d.Machine, d.Digest, d.At)
	return nil
}

func listCmd(ctx context.Context, e *env) error {
	all, err := deployments(ctx, e.reg)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSON(e.out, map[string]any{"deployments": all})
	}
	w := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MACHINE\tDIGEST\tRECORDED")
	for _, d := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\n", d.Machine, d.Digest, d.At)
	}
	fmt.Fprintf(w, "(%d machines)\n", len(all))
	return w.Flush()
}

// deploymentProblems names every machine of nodes (all recorded machines
// when nodes is empty) but this one whose recorded digest is not digest.
func deploymentProblems(ctx context.Context, reg *cluster.Cluster, nodes []string, machine, digest string) []string {
	all, err := deployments(ctx, reg)
	if err != nil {
		return []string{"cannot read the deployment records: " + err.Error()}
	}
	var problems []string
	for _, d := range all {
		if d.Machine == machine || d.Digest == digest || (len(nodes) > 0 && !slices.Contains(nodes, d.Machine)) {
			continue
		}
		problems = append(problems, fmt.Sprintf("machine %s was deployed (%s) with another .env or Caddyfile than this machine's: copy them there and run ./deploy.sh deploy", d.Machine, d.At))
	}
	return problems
}

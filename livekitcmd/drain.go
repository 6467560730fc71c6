package livekitcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// drainCmd sets a node aside from new rooms (on) or takes it back.
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

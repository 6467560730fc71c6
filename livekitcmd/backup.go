package livekitcmd

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// backupEntry is one key of a backup file (JSON lines): Redis' own DUMP
// format, so every type (hash, set, string...) and its TTL round-trip.
type backupEntry struct {
	Key   string `json:"key"`
	TTLms int64  `json:"ttl_ms,omitempty"` // 0: no expiry
	Dump  string `json:"dump"`             // base64 of DUMP
}

func backupCommands() []*cobra.Command {
	backup := &cobra.Command{
		Use:   "backup FILE",
		Short: "Writes LiveKit's Redis keys (and the proxy's) to FILE",
		Args:  cobra.ExactArgs(1),
		RunE:  runOps(backupCmd),
	}
	backup.Flags().String("match", "*", "Only keys matching this pattern (the DB is LiveKit's by default)")
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restores a backup into Redis, replacing keys of the same name",
		Args:  cobra.ExactArgs(1),
		RunE:  runOps(restoreCmd),
	}
	return []*cobra.Command{backup, restore}
}

// runOps opens the cluster's Redis for a backup or restore (no look at
// the nodes: the cluster may be down, which is when a restore is needed).
func runOps(f func(context.Context, *cobra.Command, *cluster.Cluster, string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cmd.SilenceUsage = true
		c, err := clusterFrom(cmd)
		if err != nil {
			return err
		}
		reg, err := c.Open(zap.NewNop())
		if err != nil {
			return err
		}
		defer reg.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
		defer cancel()
		return f(ctx, cmd, reg, args[0])
	}
}

func backupCmd(ctx context.Context, cmd *cobra.Command, reg *cluster.Cluster, file string) error {
	match, _ := cmd.Flags().GetString("match")
	tmp := file + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // holds secrets' neighbours: private
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	n := 0
	err = reg.Backup(ctx, match, func(k cluster.Key) error {
		n++
		return enc.Encode(backupEntry{Key: k.Name, TTLms: k.TTL.Milliseconds(), Dump: base64.StdEncoding.EncodeToString(k.Dump)})
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "backed up %d keys to %s\n", n, file)
	return nil
}

func restoreCmd(ctx context.Context, cmd *cobra.Command, reg *cluster.Cluster, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	n := 0
	for {
		var e backupEntry
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: entry %d: %w", file, n+1, err)
		}
		dump, err := base64.StdEncoding.DecodeString(e.Dump)
		if err != nil {
			return fmt.Errorf("%s: key %s: %w", file, e.Key, err)
		}
		if err := reg.RestoreKey(ctx, cluster.Key{Name: e.Key, TTL: time.Duration(e.TTLms) * time.Millisecond, Dump: dump}); err != nil {
			return fmt.Errorf("RESTORE %s: %w", e.Key, err)
		}
		n++
	}
	fmt.Fprintf(cmd.OutOrStdout(), "restored %d keys from %s\n", n, file)
	return nil
}

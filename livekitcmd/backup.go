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
		RunE:  runWith(false, 10*time.Minute, backupCmd),
	}
	backup.Flags().String("match", "*", "Only keys matching this pattern (the DB is LiveKit's by default)")
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restores a backup into Redis, replacing keys of the same name",
		Args:  cobra.ExactArgs(1),
		RunE:  runWith(false, 10*time.Minute, restoreCmd),
	}
	return []*cobra.Command{backup, restore}
}

func backupCmd(ctx context.Context, e *env) error {
	file := e.args[0]
	match, _ := e.cmd.Flags().GetString("match")
	tmp := file + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // holds secrets' neighbours: private
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	n := 0
	err = e.reg.Backup(ctx, match, func(k cluster.Key) error {
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
	fmt.Fprintf(e.out, "backed up %d keys to %s\n", n, file)
	return nil
}

func restoreCmd(ctx context.Context, e *env) error {
	file := e.args[0]
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	n := 0
	for {
		var k backupEntry
		if err := dec.Decode(&k); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: entry %d: %w", file, n+1, err)
		}
		dump, err := base64.StdEncoding.DecodeString(k.Dump)
		if err != nil {
			return fmt.Errorf("%s: key %s: %w", file, k.Key, err)
		}
		if err := e.reg.RestoreKey(ctx, cluster.Key{Name: k.Key, TTL: time.Duration(k.TTLms) * time.Millisecond, Dump: dump}); err != nil {
			return fmt.Errorf("RESTORE %s: %w", k.Key, err)
		}
		n++
	}
	fmt.Fprintf(e.out, "restored %d keys from %s\n", n, file)
	return nil
}

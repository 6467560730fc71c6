package livekitcmd

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

// clusterFrom reads the cluster the commands look at: the first livekit_lb
// or livekit_token of --config (the same file Caddy runs), or --redis and
// friends. Placeholders such as {env.REDIS_PASSWORD} resolve as in Caddy.
func clusterFrom(cmd *cobra.Command) (livekitlb.Cluster, error) {
	var c livekitlb.Cluster
	configFile, _ := cmd.Flags().GetString("config")
	adapter, _ := cmd.Flags().GetString("adapter")
	redisAddr, _ := cmd.Flags().GetString("redis")
	if configFile == "" && redisAddr == "" {
		redisAddr = os.Getenv("LIVEKIT_REDIS_ADDRESS")
	}
	if configFile != "" {
		cfg, _, _, err := caddycmd.LoadConfig(configFile, adapter)
		if err != nil {
			return c, err
		}
		var doc any
		if err := json.Unmarshal(cfg, &doc); err != nil {
			return c, err
		}
		raw := findCluster(doc)
		if raw == nil {
			return c, fmt.Errorf("%s has no livekit_lb or livekit_token handler", configFile)
		}
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &c); err != nil {
			return c, err
		}
	}
	if redisAddr != "" {
		c.Redis = cluster.RedisConfig{Address: redisAddr, Password: "{env.REDIS_PASSWORD}"}
	}
	if nets, _ := cmd.Flags().GetString("allow-networks"); nets != "" {
		c.AllowNetworks = strings.Split(nets, ",")
	}
	if c.Redis.Empty() {
		return c, fmt.Errorf("no Redis: give --config <Caddyfile> or --redis <host:port> (or LIVEKIT_REDIS_ADDRESS)")
	}
	return c, nil
}

// findCluster walks adapted JSON for the first handler of ours.
func findCluster(v any) map[string]any {
	switch t := v.(type) {
	case map[string]any:
		if h, _ := t["handler"].(string); h == "livekit_lb" || h == "livekit_token" {
			return t
		}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			if found := findCluster(t[k]); found != nil {
				return found
			}
		}
	case []any:
		for _, e := range t {
			if found := findCluster(e); found != nil {
				return found
			}
		}
	}
	return nil
}

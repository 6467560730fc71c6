package livekitlb

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// UnmarshalCaddyfileBlock reads what every directive embedding Cluster
// shares: an optional Redis address argument, then a block whose cluster
// options are taken here and whose other subdirectives go to own. It fails
// when no Redis was given.
func (c *Cluster) UnmarshalCaddyfileBlock(d *caddyfile.Dispenser, directive string, own func(*caddyfile.Dispenser) error) error {
	if d.NextArg() {
		c.Redis.Address = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		ok, err := c.UnmarshalOption(d)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := own(d); err != nil {
			return err
		}
	}
	if c.Redis.Empty() {
		return d.Errf("%s needs a redis address", directive)
	}
	return nil
}

// UnmarshalOption parses the cluster option at the dispenser's cursor, if
// it is one (redis, node_port, node_address(es), allow_networks, the durations,
// load_measure, the limits, the regions, api_key, api_secret), so that every
// directive spells them the same way.
func (c *Cluster) UnmarshalOption(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "redis":
		return true, unmarshalRedis(d, &c.Redis)
	case "node_port":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		p, err := strconv.Atoi(d.Val())
		if err != nil {
			return true, d.Errf("node_port: %v", err)
		}
		c.NodePort = p
	case "node_address":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return true, d.Err("node_address takes <advertised_ip> <host:port>")
		}
		if c.NodeAddresses == nil {
			c.NodeAddresses = map[string]string{}
		}
		c.NodeAddresses[args[0]] = args[1]
	case "node_addresses":
		// the list form, for a value from the environment that may be empty:
		// node_addresses {$NODE_ADDRESSES}
		for _, arg := range d.RemainingArgs() {
			for _, pair := range strings.Split(arg, ",") {
				ip, dial, ok := strings.Cut(pair, "=")
				if pair == "" {
					continue
				}
				if !ok || ip == "" || dial == "" {
					return true, d.Errf("node_addresses: %q is not <advertised_ip>=<host:port>", pair)
				}
				if c.NodeAddresses == nil {
					c.NodeAddresses = map[string]string{}
				}
				c.NodeAddresses[ip] = dial
			}
		}
	case "allow_networks":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.ArgErr()
		}
		c.AllowNetworks = append(c.AllowNetworks, args...)
	case "refresh_interval", "stale_after", "placement_cache", "redis_timeout", "fail_duration", "probe_interval", "probe_timeout":
		name := d.Val()
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		var v time.Duration
		if name == "probe_interval" && d.Val() == "off" {
			v = -1
		} else {
			var err error
			if v, err = caddy.ParseDuration(d.Val()); err != nil || v <= 0 {
				return true, d.Errf("%s: want a positive duration, got %q", name, d.Val())
			}
		}
		*map[string]*caddy.Duration{
			"refresh_interval": &c.RefreshInterval, "stale_after": &c.StaleAfter,
			"placement_cache": &c.PlacementCache, "redis_timeout": &c.RedisTimeout,
			"fail_duration": &c.FailDuration, "probe_interval": &c.ProbeInterval,
			"probe_timeout": &c.ProbeTimeout,
		}[name] = caddy.Duration(v)
	case "api_key":
		if !d.AllArgs(&c.APIKey) {
			return true, d.ArgErr()
		}
	case "api_secret":
		if !d.AllArgs(&c.APISecret) {
			return true, d.ArgErr()
		}
	case "sysload_limit":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		v, err := strconv.ParseFloat(d.Val(), 64)
		if err != nil || v < 0 {
			return true, d.Errf("sysload_limit: want a load per CPU such as 0.9, got %q", d.Val())
		}
		c.SysloadLimit = v
	case "max_rooms", "max_clients":
		name := d.Val()
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		v, err := strconv.Atoi(d.Val())
		if err != nil || v < 0 {
			return true, d.Errf("%s: want a number, got %q", name, d.Val())
		}
		*map[string]*int{"max_rooms": &c.MaxRooms, "max_clients": &c.MaxClients}[name] = v
	case "region":
		if !d.AllArgs(&c.Region) {
			return true, d.ArgErr()
		}
	case "region_header":
		if !d.AllArgs(&c.RegionHeader) {
			return true, d.ArgErr()
		}
	case "geoip_db":
		if !d.AllArgs(&c.GeoIPDB) {
			return true, d.ArgErr()
		}
	case "regions":
		// regions {
		//     <name> <lat> <lon>
		// }
		if d.NextArg() {
			return true, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			name := d.Val()
			args := d.RemainingArgs()
			if len(args) != 2 {
				return true, d.Errf("regions: want <name> <lat> <lon>, got %s %v", name, args)
			}
			lat, err1 := strconv.ParseFloat(args[0], 64)
			lon, err2 := strconv.ParseFloat(args[1], 64)
			if err1 != nil || err2 != nil {
				return true, d.Errf("regions: %s: lat and lon are numbers, got %v", name, args)
			}
			c.Regions = append(c.Regions, cluster.Region{Name: name, Lat: lat, Lon: lon})
		}
	case "load_measure":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		if err := cluster.ValidMeasure(d.Val()); err != nil {
			return true, d.Err(err.Error())
		}
		c.LoadMeasure = d.Val()
	default:
		return false, nil
	}
	return true, nil
}

// unmarshalRedis reads a redis block (the fields of livekit.yaml's redis).
func unmarshalRedis(d *caddyfile.Dispenser, c *cluster.RedisConfig) error {
	if d.NextArg() {
		c.Address = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	text := map[string]*string{"address": &c.Address, "username": &c.Username, "password": &c.Password,
		"sentinel_master_name": &c.SentinelMasterName, "sentinel_username": &c.SentinelUsername,
		"sentinel_password": &c.SentinelPassword}
	lists := map[string]*[]string{"sentinel_addresses": &c.SentinelAddresses, "cluster_addresses": &c.ClusterAddresses}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name, ok := d.Val(), false
		switch {
		case text[name] != nil:
			ok = d.AllArgs(text[name])
		case lists[name] != nil:
			*lists[name] = d.RemainingArgs()
			ok = len(*lists[name]) > 0
		case name == "db":
			var s string
			if ok = d.AllArgs(&s); ok {
				n, err := strconv.Atoi(s)
				if err != nil {
					return d.Errf("db: %v", err)
				}
				c.DB = n
			}
		case name == "use_tls":
			c.UseTLS, ok = true, !d.NextArg()
		default:
			return d.Errf("unknown redis option %q", name)
		}
		if !ok {
			return d.ArgErr()
		}
	}
	if err := c.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

package livekitlb

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	httpcaddyfile.RegisterDirective("livekit_lb", parseLiveKitLB)
	httpcaddyfile.RegisterDirectiveOrder("livekit_lb", httpcaddyfile.Before, "reverse_proxy")
}

// Defaults of the reverse_proxy that livekit_lb expands into, tuned for
// signalling: nodes sit on a LAN, so a dial that takes longer than 2s is a
// dead node, and one that answers nothing in 10s is stuck; a retry goes to another node before the WebSocket upgrade; a
// config reload leaves live WebSockets open for 10 minutes.
const (
	defaultDialTimeout      = 2 * time.Second
	defaultResponseTimeout  = 10 * time.Second // a backstop: the probes end a request to a frozen node within a second
	defaultRetries          = 2
	defaultTryInterval      = 10 * time.Millisecond // the retry goes to another node: no reason to wait
	defaultStreamCloseDelay = 10 * time.Minute
)

// parseLiveKitLB sets up the livekit_lb handler and the reverse_proxy behind
// it from a Caddyfile. Syntax:
//
//	livekit_lb [<matcher>] [<redis_address>] {
//	    redis {
//	        address              <host:port>
//	        username             <username>
//	        password             <password>
//	        db                   <number>
//	        use_tls
//	        sentinel_master_name <name>
//	        sentinel_username    <username>
//	        sentinel_password    <password>
//	        sentinel_addresses   <host:port...>
//	        cluster_addresses    <host:port...>
//	    }
//	    node_port        <port>
//	    node_address     <advertised_ip> <host:port>
//	    allow_networks   <cidr...|private>
//	    refresh_interval <duration>
//	    stale_after      <duration>
//	    placement_cache  <duration>
//	    redis_timeout    <duration>
//	    fail_duration    <duration>
//	    probe_interval   <duration>|off
//	    probe_timeout    <duration>
//	    load_measure     sysload|cpuload|rooms|clients
//	    api_key          <key>
//	    api_secret       <secret>
//	    verify           on|off
//
//	    # any reverse_proxy subdirective except to and dynamic, e.g.
//	    transport http {
//	        dial_timeout 1s
//	    }
//	}
func parseLiveKitLB(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	matcherSet, err := h.ExtractMatcherSet() // rewinds the dispenser
	if err != nil {
		return nil, err
	}
	h.Next() // directive name
	lb := new(Handler)
	var proxyTokens []caddyfile.Token
	if err := lb.unmarshal(h.Dispenser, &proxyTokens); err != nil {
		return nil, err
	}
	rp, err := proxyFor(h, proxyTokens)
	if err != nil {
		return nil, err
	}
	var matcherSetsRaw []caddy.ModuleMap
	if matcherSet != nil {
		matcherSetsRaw = []caddy.ModuleMap{matcherSet}
	}
	warnings := new([]caddyconfig.Warning)
	return []httpcaddyfile.ConfigValue{{
		Class: "route",
		Value: caddyhttp.Route{
			MatcherSetsRaw: matcherSetsRaw,
			HandlersRaw: []json.RawMessage{
				caddyconfig.JSONModuleObject(lb, "handler", "livekit_lb", warnings),
				caddyconfig.JSONModuleObject(rp, "handler", "reverse_proxy", warnings),
			},
		},
	}}, nil
}

// unmarshal reads livekit_lb's own options; every other subdirective is
// collected for the reverse_proxy.
func (lb *Handler) unmarshal(d *caddyfile.Dispenser, proxy *[]caddyfile.Token) error {
	return lb.Cluster.UnmarshalCaddyfileBlock(d, "livekit_lb", func(d *caddyfile.Dispenser) error {
		switch d.Val() {
		case "api_key":
			if !d.AllArgs(&lb.APIKey) {
				return d.ArgErr()
			}
		case "api_secret":
			if !d.AllArgs(&lb.APISecret) {
				return d.ArgErr()
			}
		case "verify":
			if !d.AllArgs(&lb.Verify) {
				return d.ArgErr()
			}
			if lb.Verify != "on" && lb.Verify != "off" {
				return d.Errf("verify is on or off, not %q", lb.Verify)
			}
		case "to", "dynamic":
			return d.Errf("livekit_lb chooses the nodes itself; %q is not allowed", d.Val())
		default:
			*proxy = append(*proxy, d.NextSegment()...)
		}
		return nil
	})
}

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
	if c.Redis.Address == "" && len(c.Redis.SentinelAddresses) == 0 && len(c.Redis.ClusterAddresses) == 0 {
		return d.Errf("%s needs a redis address", directive)
	}
	return nil
}

// UnmarshalOption parses the cluster option at the dispenser's cursor, if
// it is one (redis, node_port, node_address, allow_networks, the durations,
// load_measure), so that every directive spells them the same way.
func (c *Cluster) UnmarshalOption(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "redis":
		return true, c.Redis.unmarshal(d)
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
	case "load_measure":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		if err := validMeasure(d.Val()); err != nil {
			return true, d.Err(err.Error())
		}
		c.LoadMeasure = d.Val()
	default:
		return false, nil
	}
	return true, nil
}

func (c *RedisConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		c.Address = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var ok bool
		switch d.Val() {
		case "address":
			ok = d.AllArgs(&c.Address)
		case "username":
			ok = d.AllArgs(&c.Username)
		case "password":
			ok = d.AllArgs(&c.Password)
		case "db":
			var s string
			if ok = d.AllArgs(&s); ok {
				n, err := strconv.Atoi(s)
				if err != nil {
					return d.Errf("db: %v", err)
				}
				c.DB = n
			}
		case "use_tls":
			c.UseTLS, ok = true, !d.NextArg()
		case "sentinel_master_name":
			ok = d.AllArgs(&c.SentinelMasterName)
		case "sentinel_username":
			ok = d.AllArgs(&c.SentinelUsername)
		case "sentinel_password":
			ok = d.AllArgs(&c.SentinelPassword)
		case "sentinel_addresses":
			c.SentinelAddresses = d.RemainingArgs()
			ok = len(c.SentinelAddresses) > 0
		case "cluster_addresses":
			c.ClusterAddresses = d.RemainingArgs()
			ok = len(c.ClusterAddresses) > 0
		default:
			return d.Errf("unknown redis option %q", d.Val())
		}
		if !ok {
			return d.ArgErr()
		}
	}
	if err := c.validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// proxyFor builds the reverse_proxy from the passed-through subdirectives,
// then fills in livekit's upstream source, policy and signalling defaults
// wherever the operator did not choose.
func proxyFor(h httpcaddyfile.Helper, tokens []caddyfile.Token) (*reverseproxy.Handler, error) {
	line := h.Line()
	all := append([]caddyfile.Token{{File: h.File(), Line: line, Text: "reverse_proxy"}, {File: h.File(), Line: line, Text: "{"}}, tokens...)
	all = append(all, caddyfile.Token{File: h.File(), Line: line + 1<<20, Text: "}"})
	rp := new(reverseproxy.Handler)
	if err := rp.UnmarshalCaddyfile(caddyfile.NewDispenser(all)); err != nil {
		return nil, err
	}
	if err := rp.FinalizeUnmarshalCaddyfile(h); err != nil {
		return nil, err
	}
	rp.DynamicUpstreamsRaw = caddyconfig.JSONModuleObject(Upstreams{}, "source", "livekit", nil)
	if rp.LoadBalancing == nil {
		rp.LoadBalancing = new(reverseproxy.LoadBalancing)
	}
	lb := rp.LoadBalancing
	if lb.SelectionPolicyRaw == nil {
		lb.SelectionPolicyRaw = caddyconfig.JSONModuleObject(Policy{}, "policy", "livekit", nil)
	}
	if lb.Retries == 0 && lb.TryDuration == 0 {
		lb.Retries = defaultRetries
	}
	if lb.TryInterval == 0 {
		lb.TryInterval = caddy.Duration(defaultTryInterval)
	}
	if rp.TransportRaw == nil {
		rp.TransportRaw = caddyconfig.JSONModuleObject(&reverseproxy.HTTPTransport{
			DialTimeout:           caddy.Duration(defaultDialTimeout),
			ResponseHeaderTimeout: caddy.Duration(defaultResponseTimeout),
		}, "protocol", "http", nil)
	}
	if rp.StreamCloseDelay == 0 {
		rp.StreamCloseDelay = caddy.Duration(defaultStreamCloseDelay)
	}
	return rp, nil
}

// UnmarshalCaddyfile sets up the upstream source (it takes no options):
//
//	dynamic livekit
func (*Upstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

// UnmarshalCaddyfile sets up the selection policy (it takes no options):
//
//	lb_policy livekit
func (*Policy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noOptions(d)
}

func noOptions(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("takes no options")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Upstreams)(nil)
	_ caddyfile.Unmarshaler = (*Policy)(nil)
)

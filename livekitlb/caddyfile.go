package livekitlb

import (
	"encoding/json"
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
//	    node_addresses   [<advertised_ip>=<host:port>...]
//	    allow_networks   <cidr...|private>
//	    refresh_interval <duration>
//	    stale_after      <duration>
//	    placement_cache  <duration>
//	    redis_timeout    <duration>
//	    fail_duration    <duration>
//	    probe_interval   <duration>|off
//	    probe_timeout    <duration>
//	    load_measure     sysload|cpuload|rooms|clients
//	    sysload_limit    <load per CPU>
//	    max_rooms        <number>
//	    max_clients      <number>
//	    regions {
//	        <name> <lat> <lon>
//	    }
//	    region           <name>
//	    region_header    <header>
//	    geoip_db         <file.mmdb>
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
		// the source yields the one node chosen: `first` takes it while
		// Caddy's own health checks (if any) agree, else retries
		lb.SelectionPolicyRaw = caddyconfig.JSONModuleObject(reverseproxy.FirstSelection{}, "policy", "first", nil)
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
)

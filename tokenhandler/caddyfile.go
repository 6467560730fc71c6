package tokenhandler

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("livekit_token", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("livekit_token", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	th := new(Handler)
	err := th.UnmarshalCaddyfile(h.Dispenser)
	return th, err
}

// UnmarshalCaddyfile sets up the create-room endpoint. Put it on a path
// beside livekit_lb; the cluster options are livekit_lb's, so both share one
// registry when they name the same Redis. Syntax:
//
//	livekit_token [<matcher>] [<redis_address>] {
//	    redis { ... }            # as livekit_lb, and every other cluster option
//	    api_key          <key>
//	    api_secret       <secret>
//	    public_url       wss://<host>
//	    auth_key         <bearer key callers must send>
//	    identity_header  <header set by forward_auth>
//	    allow_anonymous
//	    allow_caller_identity [true|false]
//	    allow_caller_metadata [true|false]
//	    ttl              <duration>
//	    max_ttl          <duration>
//	    can_publish      true|false
//	    can_subscribe    true|false
//	    can_publish_data true|false
//	    empty_timeout    <duration>
//	    max_participants <n>
//	    max_body_bytes   <n>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	return h.Cluster.UnmarshalCaddyfileBlock(d, "livekit_token", h.unmarshalOption)
}

// unmarshalOption reads one of the endpoint's own options.
func (h *Handler) unmarshalOption(d *caddyfile.Dispenser) error {
	text := map[string]*string{"public_url": &h.PublicURL, "auth_key": &h.AuthKey, "identity_header": &h.IdentityHeader}
	// an optional true|false, so that {$ENV} can decide
	flags := map[string]*bool{"allow_caller_identity": &h.AllowCallerIdentity, "allow_caller_metadata": &h.AllowCallerMetadata}
	grants := map[string]**bool{"can_publish": &h.CanPublish, "can_subscribe": &h.CanSubscribe, "can_publish_data": &h.CanPublishData}
	durations := map[string]*caddy.Duration{"ttl": &h.TTL, "max_ttl": &h.MaxTTL, "empty_timeout": &h.EmptyTimeout}
	name, args := d.Val(), d.RemainingArgs()
	one := func(parse func(string) error) error {
		if len(args) != 1 {
			return d.ArgErr()
		}
		if err := parse(args[0]); err != nil {
			return d.Errf("%s: %v", name, err)
		}
		return nil
	}
	switch {
	case text[name] != nil:
		return one(func(s string) error { *text[name] = s; return nil })
	case flags[name] != nil && len(args) == 0:
		*flags[name] = true
		return nil
	case flags[name] != nil:
		return one(func(s string) (err error) { *flags[name], err = strconv.ParseBool(s); return err })
	case grants[name] != nil:
		return one(func(s string) error { b, err := strconv.ParseBool(s); *grants[name] = &b; return err })
	case durations[name] != nil:
		return one(func(s string) error {
			v, err := caddy.ParseDuration(s)
			*durations[name] = caddy.Duration(v)
			return err
		})
	case name == "max_participants":
		return one(func(s string) error {
			n, err := strconv.ParseUint(s, 10, 31)
			h.MaxParticipants = uint32(n)
			return err
		})
	case name == "max_body_bytes":
		return one(func(s string) error { n, err := strconv.ParseUint(s, 10, 31); h.MaxBodyBytes = int64(n); return err })
	case name == "allow_anonymous":
		h.AllowAnonymous = true
		if len(args) > 0 {
			return d.ArgErr()
		}
		return nil
	}
	return d.Errf("unknown livekit_token option %q", name)
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

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
	var ok bool
	switch name := d.Val(); name {
	case "public_url":
		ok = d.AllArgs(&h.PublicURL)
	case "auth_key":
		ok = d.AllArgs(&h.AuthKey)
	case "identity_header":
		ok = d.AllArgs(&h.IdentityHeader)
	case "allow_anonymous":
		h.AllowAnonymous, ok = true, !d.NextArg()
	case "allow_caller_identity", "allow_caller_metadata":
		// an optional true|false, so that {$ENV} can decide
		on := true
		if d.NextArg() {
			b, err := strconv.ParseBool(d.Val())
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			on = b
		}
		*map[string]*bool{"allow_caller_identity": &h.AllowCallerIdentity, "allow_caller_metadata": &h.AllowCallerMetadata}[name] = on
		ok = !d.NextArg()
	case "ttl", "max_ttl", "empty_timeout":
		var s string
		if ok = d.AllArgs(&s); ok {
			v, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			*map[string]*caddy.Duration{"ttl": &h.TTL, "max_ttl": &h.MaxTTL, "empty_timeout": &h.EmptyTimeout}[name] = caddy.Duration(v)
		}
	case "can_publish", "can_subscribe", "can_publish_data":
		var s string
		if ok = d.AllArgs(&s); ok {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			*map[string]**bool{"can_publish": &h.CanPublish, "can_subscribe": &h.CanSubscribe, "can_publish_data": &h.CanPublishData}[name] = &b
		}
	case "max_participants", "max_body_bytes":
		var s string
		if ok = d.AllArgs(&s); ok {
			n, err := strconv.ParseUint(s, 10, 31)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			if name == "max_participants" {
				h.MaxParticipants = uint32(n)
			} else {
				h.MaxBodyBytes = int64(n)
			}
		}
	default:
		return d.Errf("unknown livekit_token option %q", name)
	}
	if !ok {
		return d.ArgErr()
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

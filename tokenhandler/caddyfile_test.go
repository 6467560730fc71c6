package tokenhandler

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func adapt(src string) (string, error) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n"+src+"\n}"), nil)
	return string(out), err
}

func TestCaddyfile(t *testing.T) {
	out, err := adapt(`livekit_token 127.0.0.1:6379 {
		api_key {env.K}
		api_secret {env.S}
		public_url wss://rtc.example.com
		auth_key {env.A}
		ttl 1h
		max_ttl 2h
		can_publish false
		empty_timeout 30s
		max_participants 8
		max_body_bytes 1024
		load_measure clients
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"handler":"livekit_token"`, `"address":"127.0.0.1:6379"`, `"api_key":"{env.K}"`, `"api_secret":"{env.S}"`,
		`"public_url":"wss://rtc.example.com"`, `"auth_key":"{env.A}"`, `"ttl":3600000000000`, `"max_ttl":7200000000000`,
		`"can_publish":false`, `"empty_timeout":30000000000`, `"max_participants":8`, `"max_body_bytes":1024`,
		`"load_measure":"clients"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %s in\n%s", want, out)
		}
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for name, src := range map[string]string{
		"no redis":       "livekit_token {\n api_key k\n}",
		"unknown option": "livekit_token 127.0.0.1:6379 {\n colour blue\n}",
		"bad bool":       "livekit_token 127.0.0.1:6379 {\n can_publish maybe\n}",
		"bad duration":   "livekit_token 127.0.0.1:6379 {\n ttl forever\n}",
		"bad number":     "livekit_token 127.0.0.1:6379 {\n max_participants -1\n}",
		"anon with arg":  "livekit_token 127.0.0.1:6379 {\n allow_anonymous yes\n}",
	} {
		if _, err := adapt(src); err == nil {
			t.Errorf("%s: adapted", name)
		}
	}
}

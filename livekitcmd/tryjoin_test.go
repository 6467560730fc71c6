package livekitcmd

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testKey   = "create-room-key-0123456789abcdef0123"
	testToken = "eyJ.token-that-must-never-be-shown.sig"
)

// fakeProxy answers create-room and /rtc/validate as our Caddy does, or
// fails one of them as told.
type fakeProxy struct {
	mu       sync.Mutex
	rooms    []string
	answer   string // create-room's answer; "" for a token
	validate int    // /rtc/validate's status; 0 for 200
}

func (p *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/create-room":
		var req createRoomRequest
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer "+testKey {
			http.Error(w, `{"error": "unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || !strings.HasPrefix(req.RoomName, "deploy-verify-") || req.TTL != 60 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.rooms = append(p.rooms, req.RoomName)
		p.mu.Unlock()
		if p.answer != "" {
			_, _ = w.Write([]byte(p.answer))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"room_name": req.RoomName, "token": testToken, "url": "ws://x"})
	case "/rtc/validate":
		if r.URL.Query().Get("access_token") != testToken {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		if p.validate != 0 {
			http.Error(w, "could not validate "+testToken+"\nnode full", p.validate) // an echo of the token
			return
		}
		_, _ = w.Write([]byte("success"))
	default:
		http.NotFound(w, r)
	}
}

// The create-room check of verify: a room, then a join's validation with
// its token, through each proxy URL; every failure is a problem line that
// shows neither the key nor the token.
func TestVerifyCreateRoom(t *testing.T) {
	t.Setenv("NODES", "")
	r := startRedis(t)
	r.register(t, lkNode("ND_a", "10.9.0.1", serving, 0))
	cfg := writeCaddyfile(t, r, map[string]string{"10.9.0.1": liveNode(t)})
	verify := func(t *testing.T, key string, args ...string) (string, error) {
		t.Helper()
		t.Setenv("CREATE_ROOM_KEY", key)
		out, err := cli(t, append([]string{"verify", "--config", cfg}, args...)...)
		if strings.Contains(out, testKey) || strings.Contains(out, testToken) || (err != nil && (strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), testToken))) {
			t.Errorf("verify shows the key or the token:\n%s%v", out, err)
		}
		return out, err
	}

	t.Run("two proxies", func(t *testing.T) {
		p1, p2 := &fakeProxy{}, &fakeProxy{}
		s1, s2 := httptest.NewServer(p1), httptest.NewServer(p2)
		defer s1.Close()
		defer s2.Close()
		out, err := verify(t, testKey, "--create-room", s1.URL+"/api/create-room", "--create-room", s2.URL+"/api/create-room")
		if err != nil || !strings.Contains(out, "create-room and a join through 2 proxy URL(s)") {
			t.Errorf("verify through two good proxies: %v\n%s", err, out)
		}
		if len(p1.rooms) != 1 || len(p2.rooms) != 1 || p1.rooms[0] == p2.rooms[0] {
			t.Errorf("rooms created: %v and %v, want one each, named apart", p1.rooms, p2.rooms)
		}
	})

	for _, c := range []struct {
		name, key string
		proxy     *fakeProxy
		want      string // the problem, after the proxy's URL
	}{
		{"wrong key", "another-key-0123456789abcdef0123456789", &fakeProxy{}, `/api/create-room answered 401: {"error": "unauthorized"}`},
		{"no token", testKey, &fakeProxy{answer: `{"room_name": "x"}`}, `/api/create-room answered 200: {"room_name": "x"}`},
		{"not JSON", testKey, &fakeProxy{answer: "<html>"}, "/api/create-room answered 200: <html>"},
		{"join refused", testKey, &fakeProxy{validate: http.StatusServiceUnavailable}, "/rtc/validate with the new room's token answered 503: could not validate <redacted> node full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := httptest.NewServer(c.proxy)
			defer s.Close()
			out, err := verify(t, c.key, "--create-room", s.URL+"/api/create-room")
			if got := problems(out); err == nil || len(got) != 1 || !strings.HasSuffix(got[0], c.want) || !strings.Contains(got[0], s.URL) {
				t.Errorf("problems %q, want one ending %q", got, c.want)
			}
		})
	}

	t.Run("no key", func(t *testing.T) {
		out, err := verify(t, "", "--create-room", "http://127.0.0.1:1/api/create-room")
		if got := problems(out); err == nil || len(got) != 1 || !strings.HasPrefix(got[0], "CREATE_ROOM_KEY is not set") {
			t.Errorf("problems %q", got)
		}
	})

	t.Run("proxy down", func(t *testing.T) {
		u := "http://" + deadNode(t) + "/api/create-room"
		out, err := verify(t, testKey, "--create-room", u)
		if got := problems(out); err == nil || len(got) != 1 || !strings.HasPrefix(got[0], "POST "+u+": ") {
			t.Errorf("problems %q", got)
		}
	})

	t.Run("not a URL", func(t *testing.T) {
		out, _ := verify(t, testKey, "--create-room", "caddy1/api/create-room")
		if got := problems(out); len(got) != 1 || !strings.Contains(got[0], "is not an http(s) URL") {
			t.Errorf("problems %q", got)
		}
	})

	t.Run("TLS under a name, dialled on an address", func(t *testing.T) {
		s := httptest.NewTLSServer(&fakeProxy{}) // its certificate names example.com
		defer s.Close()
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		dial := s.Listener.Addr().String()
		if _, err := verify(t, testKey, "--create-room", "https://example.com/api/create-room", "--dial", dial, "--ca-file", ca); err != nil {
			t.Errorf("verify over TLS with --dial and --ca-file: %v", err)
		}
		out, err := verify(t, testKey, "--create-room", "https://example.com/api/create-room", "--dial", dial)
		if got := problems(out); err == nil || len(got) != 1 || !strings.Contains(got[0], "certificate") {
			t.Errorf("verify over TLS without the CA: %q", got)
		}
		if _, err := verify(t, testKey, "--create-room", "https://example.com/api/create-room", "--dial", "example.com"); err == nil {
			t.Errorf("--dial without a port: no error")
		}
		if _, err := verify(t, testKey, "--create-room", "https://example.com/api/create-room", "--ca-file", cfg); err == nil {
			t.Errorf("--ca-file without a certificate: no error")
		}
	})
}

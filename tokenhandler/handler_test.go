package tokenhandler

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/livekit/protocol/auth"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

const (
	key     = "devkey"
	secret  = "0123456789abcdef0123456789abcdef-secret"
	authKey = "frontend-key-of-at-least-32-characters"
)

// fakeNode is a LiveKit node's RoomService: it records CreateRoom calls.
type fakeNode struct {
	mu     sync.Mutex
	calls  []map[string]any
	tokens []string
	status int
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.calls = append(f.calls, body)
	f.tokens = append(f.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	if r.URL.Path != "/twirp/livekit.RoomService/CreateRoom" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, `{"code":"invalid_argument","msg":"room name length exceeds limits"}`)
		return
	}
	_, _ = io.WriteString(w, `{"sid":"RM_x","name":"`+body["name"].(string)+`"}`)
}

// fakePlacer hands out nodes in order and records what happened.
type fakePlacer struct {
	nodes     []*cluster.Node
	err       error
	next      int
	failed    []string
	unplaced  []string
	lastRoute string
}

func (p *fakePlacer) Ready(context.Context) {}
func (p *fakePlacer) Route(_ context.Context, room string) (*cluster.Node, cluster.Outcome, error) {
	p.lastRoute = room
	if p.err != nil {
		return nil, "", p.err
	}
	n := p.nodes[p.next%len(p.nodes)]
	p.next++
	return n, cluster.OutcomePlaced, nil
}
func (p *fakePlacer) Failed(n *cluster.Node, _ string) { p.failed = append(p.failed, n.ID) }
func (p *fakePlacer) Unplace(_ context.Context, room, id string) error {
	p.unplaced = append(p.unplaced, room+"@"+id)
	return nil
}

type fixture struct {
	h      *Handler
	node   *fakeNode
	placer *fakePlacer
	logs   *observer.ObservedLogs
}

func newFixture(t testing.TB) *fixture {
	node := &fakeNode{}
	srv := httptest.NewServer(node)
	t.Cleanup(srv.Close)
	core, logs := observer.New(zap.DebugLevel)
	placer := &fakePlacer{nodes: []*cluster.Node{{ID: "ND_1", Dial: strings.TrimPrefix(srv.URL, "http://")}}}
	h := &Handler{
		Cluster: livekitlb.Cluster{APIKey: key, APISecret: secret}, AuthKey: authKey,
		TTL: caddy.Duration(time.Hour), MaxTTL: caddy.Duration(24 * time.Hour), MaxBodyBytes: 64 << 10,
		EmptyTimeout: caddy.Duration(90 * time.Second), MaxParticipants: 12,
		apiKey: key, apiSecret: secret, authKey: authKey,
		placer: placer, client: srv.Client(), logger: zap.New(core), created: new(createdRooms),
	}
	return &fixture{h: h, node: node, placer: placer, logs: logs}
}

// do sends a request through the handler with Caddy's request context.
func (f *fixture) do(t *testing.T, method, body string, edit func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://livekit.example.com/api/create-room", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+authKey)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	r = r.WithContext(ctx)
	if edit != nil {
		edit(r)
	}
	w := httptest.NewRecorder()
	if err := f.h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
		t.Fatalf("not a JSON error: %q %q", w.Header().Get("Content-Type"), w.Body.String())
	}
	return e.Error
}

func TestCreateRoom(t *testing.T) {
	f := newFixture(t)
	f.h.AllowCallerMetadata = true
	w := f.do(t, "POST", `{"room_name":"standup","user_name":"Alice","metadata":"{\"team\":1}"}`, nil)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got["room_name"] != "standup" || got["url"] != "ws://livekit.example.com" || got["server_url"] != got["url"] {
		t.Fatalf("response %v", got)
	}
	v, err := auth.ParseAPIToken(got["token"])
	if err != nil {
		t.Fatal(err)
	}
	_, grants, err := v.Verify(secret)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if g := grants.Video; !g.RoomJoin || g.Room != "standup" || g.RoomCreate || g.RoomAdmin || !*g.CanPublish || !*g.CanSubscribe {
		t.Fatalf("grants %+v", g)
	}
	if grants.Name != "Alice" || !strings.HasPrefix(grants.Identity, "Alice-") || grants.Metadata != `{"team":1}` {
		t.Fatalf("identity %q name %q metadata %q", grants.Identity, grants.Name, grants.Metadata)
	}
	// the room was created on the placed node with the configured settings
	if len(f.node.calls) != 1 || f.node.calls[0]["name"] != "standup" ||
		f.node.calls[0]["empty_timeout"] != 90.0 || f.node.calls[0]["max_participants"] != 12.0 {
		t.Fatalf("CreateRoom calls %v", f.node.calls)
	}
	sv, _ := auth.ParseAPIToken(f.node.tokens[0])
	if _, g, err := sv.Verify(secret); err != nil || !g.Video.RoomCreate {
		t.Fatalf("CreateRoom token: %v %+v", err, g)
	}
	// a second call for the same user gets another identity
	w2 := f.do(t, "POST", `{"room_name":"standup","user_name":"Alice"}`, nil)
	var got2 map[string]string
	_ = json.Unmarshal(w2.Body.Bytes(), &got2)
	v2, _ := auth.ParseAPIToken(got2["token"])
	if v2.Identity() == v.Identity() {
		t.Fatal("two calls for the same user_name got the same identity")
	}
}

func TestCreateRoomOptions(t *testing.T) {
	f := newFixture(t)
	f.h.AllowCallerIdentity = true
	no := false
	f.h.CanPublish = &no
	f.h.publicURL = "wss://rtc.example.org"
	w := f.do(t, "POST", `{"room_name":"r","user_name":"Bob","identity":"bob-1","ttl":600}`, nil)
	var got map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &got)
	if got["url"] != "wss://rtc.example.org" {
		t.Fatalf("url %q", got["url"])
	}
	v, _ := auth.ParseAPIToken(got["token"])
	claims, g, err := v.Verify(secret)
	if err != nil || g.Identity != "bob-1" || *g.Video.CanPublish {
		t.Fatalf("%v %+v", err, g)
	}
	if ttl := claims.ExpiresAt.Sub(claims.NotBefore.Time); ttl != 10*time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
}

func TestURLFromRequest(t *testing.T) {
	f := newFixture(t)
	url := func(edit func(*http.Request)) string {
		var got map[string]string
		_ = json.Unmarshal(f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, edit).Body.Bytes(), &got)
		return got["url"]
	}
	if u := url(func(r *http.Request) { r.TLS = &tls.ConnectionState{} }); u != "wss://livekit.example.com" {
		t.Errorf("TLS: %s", u)
	}
	fwd := func(trusted bool) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "public.example.com")
			caddyhttp.SetVar(r.Context(), caddyhttp.TrustedProxyVarKey, trusted)
		}
	}
	if u := url(fwd(false)); u != "ws://livekit.example.com" {
		t.Errorf("untrusted X-Forwarded-*: %s", u)
	}
	if u := url(fwd(true)); u != "wss://public.example.com" {
		t.Errorf("trusted X-Forwarded-*: %s", u)
	}
}

func TestAuth(t *testing.T) {
	body := `{"room_name":"r","user_name":"u"}`
	f := newFixture(t)
	for name, edit := range map[string]func(*http.Request){
		"no key":    func(r *http.Request) { r.Header.Del("Authorization") },
		"wrong key": func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
		"basic":     func(r *http.Request) { r.SetBasicAuth("u", authKey) },
	} {
		w := f.do(t, "POST", body, edit)
		if w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: status %d", name, w.Code)
		}
		errorOf(t, w)
	}
	if len(f.node.calls) != 0 {
		t.Fatal("unauthenticated call reached LiveKit")
	}
	// authenticated by Caddy's basic_auth
	f.h.authKey = ""
	w := f.do(t, "POST", body, func(r *http.Request) {
		r.Header.Del("Authorization")
		r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.id", "alice")
	})
	if w.Code != 200 {
		t.Errorf("basic_auth user: %d", w.Code)
	}
	// forward_auth's copied identity header
	f.h.IdentityHeader = "Remote-User"
	if w := f.do(t, "POST", body, func(r *http.Request) { r.Header.Set("Remote-User", "bob") }); w.Code != 200 {
		t.Errorf("identity header: %d", w.Code)
	}
	if w := f.do(t, "POST", body, func(r *http.Request) { r.Header.Del("Authorization") }); w.Code != 401 {
		t.Errorf("no identity header: %d", w.Code)
	}
	f.h.IdentityHeader = ""
	f.h.AllowAnonymous = true
	if w := f.do(t, "POST", body, func(r *http.Request) { r.Header.Del("Authorization") }); w.Code != 200 {
		t.Errorf("allow_anonymous: %d", w.Code)
	}
}

func TestBadInput(t *testing.T) {
	long := strings.Repeat("x", 257)
	for name, c := range map[string]struct {
		method, body string
		edit         func(*http.Request)
		status       int
		want         string
	}{
		"GET":             {"GET", "", nil, 405, "POST"},
		"not JSON":        {"POST", "room_name=r", func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, 415, "application/json"},
		"no content type": {"POST", `{}`, func(r *http.Request) { r.Header.Del("Content-Type") }, 415, "application/json"},
		"too large":       {"POST", `{"room_name":"r","user_name":"` + strings.Repeat("u", 70<<10) + `"}`, nil, 413, "larger"},
		"too large chunked": {"POST", `{"room_name":"r","user_name":"` + strings.Repeat("u", 70<<10) + `"}`,
			func(r *http.Request) { r.ContentLength = -1 }, 413, "larger"},
		"malformed":      {"POST", `{"room_name":`, nil, 400, "malformed"},
		"syntax":         {"POST", `{"room_name" "r"}`, nil, 400, "syntax"},
		"array":          {"POST", `["r"]`, nil, 400, "malformed"},
		"trailing":       {"POST", `{"room_name":"r","user_name":"u"}{}`, nil, 400, "trailing"},
		"unknown field":  {"POST", `{"room_name":"r","user_name":"u","admin":true}`, nil, 400, "unknown field"},
		"wrong type":     {"POST", `{"room_name":5,"user_name":"u"}`, nil, 400, "room_name"},
		"no room":        {"POST", `{"user_name":"u"}`, nil, 400, "room_name is required"},
		"no user":        {"POST", `{"room_name":"r"}`, nil, 400, "user_name is required"},
		"long room":      {"POST", `{"room_name":"` + long + `","user_name":"u"}`, nil, 400, "longer than 256"},
		"control char":   {"POST", `{"room_name":"a\u0007b","user_name":"u"}`, nil, 400, "control"},
		"blank room":     {"POST", `{"room_name":"   ","user_name":"u"}`, nil, 400, "white space"},
		"padded user":    {"POST", `{"room_name":"r","user_name":" u"}`, nil, 400, "white space"},
		"long identity":  {"POST", `{"room_name":"r","user_name":"u","identity":"` + long + `"}`, nil, 400, "identity"},
		"ttl over max":   {"POST", `{"room_name":"r","user_name":"u","ttl":90000000}`, nil, 400, "ttl"},
		"negative ttl":   {"POST", `{"room_name":"r","user_name":"u","ttl":-1}`, nil, 400, "ttl"},
		"bad utf8 in id": {"POST", "{\"room_name\":\"r\",\"user_name\":\"u\",\"identity\":\"\xff\"}", nil, 400, "identity"},
	} {
		f := newFixture(t)
		w := f.do(t, c.method, c.body, c.edit)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", name, w.Code, c.status, w.Body)
			continue
		}
		if msg := errorOf(t, w); !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q lacks %q", name, msg, c.want)
		}
		if c.status == 405 && w.Header().Get("Allow") != "POST" {
			t.Errorf("405 without Allow: POST")
		}
		if len(f.node.calls) != 0 || f.placer.lastRoute != "" {
			t.Errorf("%s: bad input reached placement", name)
		}
		if f.logs.Len() == 0 {
			t.Errorf("%s: refusal not logged", name)
		}
	}
}

func TestNoNodeOrRedisDown(t *testing.T) {
	for err, want := range map[error]string{cluster.ErrNoNode: "no routable", cluster.ErrRedis: "Redis"} {
		f := newFixture(t)
		f.placer.err = err
		w := f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
		if w.Code != 503 || !strings.Contains(errorOf(t, w), want) {
			t.Errorf("%v: status %d body %s", err, w.Code, w.Body)
		}
	}
}

func TestNodeFailureUndoesPlacement(t *testing.T) {
	f := newFixture(t)
	dead := &cluster.Node{ID: "ND_dead", Dial: "127.0.0.1:1"}
	f.placer.nodes = append([]*cluster.Node{dead}, f.placer.nodes...)
	w := f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
	if w.Code != 200 {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	if len(f.placer.failed) != 1 || f.placer.failed[0] != "ND_dead" || f.placer.unplaced[0] != "r@ND_dead" {
		t.Fatalf("failed %v unplaced %v", f.placer.failed, f.placer.unplaced)
	}

	// LiveKit refusing the room: 400, placement undone, no retry elsewhere
	f = newFixture(t)
	f.node.status = 400
	w = f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
	if w.Code != 400 || !strings.Contains(errorOf(t, w), "exceeds limits") || len(f.placer.unplaced) != 1 || len(f.node.calls) != 1 {
		t.Fatalf("status %d %s unplaced %v calls %d", w.Code, w.Body, f.placer.unplaced, len(f.node.calls))
	}

	// every node down: 502, nothing left placed
	f = newFixture(t)
	f.placer.nodes = []*cluster.Node{dead}
	w = f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
	if w.Code != 502 || len(f.placer.unplaced) != createAttempts {
		t.Fatalf("status %d unplaced %v", w.Code, f.placer.unplaced)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	f := newFixture(t)
	f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
	f.do(t, "POST", `{"room_name":"r"}`, func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") })
	f.placer.nodes[0].Dial = "127.0.0.1:1"
	f.do(t, "POST", `{"room_name":"r","user_name":"u"}`, nil)
	for _, e := range f.logs.All() {
		line, _ := json.Marshal(e.ContextMap())
		for _, s := range []string{secret, authKey, "Bearer"} {
			if strings.Contains(e.Message+string(line), s) {
				t.Errorf("log %q %s contains %q", e.Message, line, s)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Handler{Cluster: livekitlb.Cluster{APIKey: key, APISecret: secret}, apiKey: key, apiSecret: secret, TTL: caddy.Duration(time.Second), MaxTTL: caddy.Duration(2 * time.Second)}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Handler){
		"no key":              func(h *Handler) { h.APIKey = "" },
		"empty key env":       func(h *Handler) { h.APIKey = "{env.NOPE}" },
		"short secret":        func(h *Handler) { h.APISecret = "short" },
		"anon with key":       func(h *Handler) { h.AllowAnonymous, h.authKey = true, "k" },
		"empty auth_key env":  func(h *Handler) { h.AuthKey = "{env.NOPE}" },
		"ttl over max":        func(h *Handler) { h.TTL = caddy.Duration(3 * time.Second) },
		"http public url":     func(h *Handler) { h.publicURL = "https://x" },
		"negative body limit": func(h *Handler) { h.MaxBodyBytes = -1 },
		"short auth_key":      func(h *Handler) { h.authKey = "k" },
		"max_ttl under 1s":    func(h *Handler) { h.TTL, h.MaxTTL = 1, 2 },
	} {
		h := ok
		edit(&h)
		if err := h.Validate(); err == nil {
			t.Errorf("%s: validated", name)
		}
	}
}

func TestSecondParticipantCostsNoCreateRoom(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"Alice", "Bob", "Carol"} {
		if w := f.do(t, "POST", `{"room_name":"standup","user_name":"`+u+`"}`, nil); w.Code != 200 {
			t.Fatalf("%s: %d", u, w.Code)
		}
	}
	if len(f.node.calls) != 1 {
		t.Fatalf("CreateRoom called %d times for one room, want 1", len(f.node.calls))
	}
	// a room that moved to another node is created there
	f.h.created.add("standup", "ND_elsewhere")
	f.do(t, "POST", `{"room_name":"standup","user_name":"Dave"}`, nil)
	if len(f.node.calls) != 2 {
		t.Fatalf("CreateRoom calls %d after the room moved, want 2", len(f.node.calls))
	}
}

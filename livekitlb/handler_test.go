package livekitlb

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/cluster/clustertest"
)

// serve runs h on a request with Caddy's vars in the context and returns the
// response and the route left for reverse_proxy (nil if next never ran).
func serve(t *testing.T, h *Handler, req *http.Request) (*httptest.ResponseRecorder, *route) {
	t.Helper()
	ctx := context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{})
	req = req.WithContext(ctx)
	w := httptest.NewRecorder()
	var rt *route
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		rt = routeFrom(r)
		w.WriteHeader(http.StatusSwitchingProtocols)
		return nil
	})
	if err := h.ServeHTTP(w, req, next); err != nil {
		t.Fatal(err)
	}
	return w, rt
}

func testHandler(t *testing.T, r *cluster.Cluster, verify bool) *Handler {
	h := &Handler{cluster: r, logger: zap.NewNop(), verifyOff: !verify}
	if verify {
		h.apiKey, h.apiSecret = testKey, testSecret
	}
	return h
}

func jsonError(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var body struct{ Error string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", w.Body.String(), err)
	}
	return body.Error
}

func TestHandlerRoutesByTokenRoom(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["standup"] = "ND_b"
	for _, verify := range []bool{false, true} {
		req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "standup", time.Hour), nil)
		w, rt := serve(t, testHandler(t, r, verify), req)
		if w.Code != http.StatusSwitchingProtocols || rt == nil || rt.node.ID != "ND_b" || rt.room != "standup" {
			t.Fatalf("verify=%v: status %d route %+v", verify, w.Code, rt)
		}
		ups, err := Upstreams{}.GetUpstreams(req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{routeVar: rt})))
		if err != nil || len(ups) != 1 || ups[0].Dial != "10.0.0.2:7880" {
			t.Fatalf("upstreams %v %v", ups, err)
		}
	}
}

func TestHandlerRefusesBadTokensWhenVerifying(t *testing.T) {
	_, r := twoNodes(t)
	h := testHandler(t, r, true)
	for name, url := range map[string]string{
		"foreign":   "/rtc?access_token=" + mint(t, "otherkey", testSecret, "x", time.Hour),
		"malformed": "/rtc?access_token=garbage",
		"missing":   "/rtc",
	} {
		w, rt := serve(t, h, httptest.NewRequest("GET", url, nil))
		if w.Code != http.StatusUnauthorized || rt != nil {
			t.Errorf("%s: status %d, next ran: %v", name, w.Code, rt != nil)
			continue
		}
		if msg := jsonError(t, w); !strings.Contains(msg, "invalid access token") {
			t.Errorf("%s: error %q", name, msg)
		}
	}
	// a tokenless health check still passes
	if w, _ := serve(t, h, httptest.NewRequest("GET", "/", nil)); w.Code != http.StatusSwitchingProtocols {
		t.Errorf("GET / refused: %d", w.Code)
	}
}

func TestHandlerMalformedTokenWithoutVerification(t *testing.T) {
	_, r := twoNodes(t)
	w, _ := serve(t, testHandler(t, r, false), httptest.NewRequest("GET", "/rtc?access_token=garbage", nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", w.Code)
	}
	jsonError(t, w)
}

func TestHandlerAnswers503WhenNothingCanDecide(t *testing.T) {
	f, r := twoNodes(t)
	f.SetErr(clustertest.ErrDown)
	req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "unknown", time.Hour), nil)
	w, rt := serve(t, testHandler(t, r, false), req)
	if w.Code != http.StatusServiceUnavailable || rt != nil || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q", w.Code, w.Header().Get("Retry-After"))
	}
	if msg := jsonError(t, w); !strings.Contains(msg, "Redis") {
		t.Fatalf("error %q does not name Redis", msg)
	}

	empty := testCluster(t, clustertest.NewStore(), noProbes(), zap.NewNop())
	w, _ = serve(t, testHandler(t, empty, false), httptest.NewRequest("GET", "/twirp/livekit.RoomService/ListRooms", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(jsonError(t, w), "no routable") {
		t.Fatalf("no nodes: status %d body %s", w.Code, w.Body)
	}
}

// A failed dial makes reverse_proxy call ResetCache before its retry: the
// node is reported and the room re-placed, and the source yields the new node.
func TestRetryAfterFailedDialMovesRoom(t *testing.T) {
	f, r := twoNodes(t)
	f.Placements["r"] = "ND_a"
	req := httptest.NewRequest("GET", "/rtc?access_token="+mint(t, testKey, testSecret, "r", time.Hour), nil)
	_, rt := serve(t, testHandler(t, r, true), req)
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{routeVar: rt}))

	if err := (Upstreams{}).ResetCache(req); err != nil {
		t.Fatal(err)
	}
	if rt.node.ID != "ND_b" || f.Room("r") != "ND_b" {
		t.Fatalf("after retry: node %s, map %s", rt.node.ID, f.Room("r"))
	}
	if ups, err := (Upstreams{}).GetUpstreams(req); err != nil || len(ups) != 1 || ups[0].Dial != "10.0.0.2:7880" {
		t.Fatalf("upstreams after the retry: %v %v", ups, err)
	}
}

func TestHandlerProvisionValidation(t *testing.T) {
	for name, h := range map[string]Handler{
		"no redis":      {},
		"bad measure":   {Cluster: Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:1"}, LoadMeasure: "x"}},
		"bad network":   {Cluster: Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:1"}, AllowNetworks: []string{"nope"}}},
		"bad node port": {Cluster: Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:1"}, NodePort: 70000}},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err == nil {
			t.Errorf("%s: provisioned", name)
			_ = h.Cleanup()
		}
		cancel()
	}
	h := Handler{Cluster: Cluster{Redis: cluster.RedisConfig{Address: "127.0.0.1:1"}, APIKey: "k"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Cleanup()
	if err := h.Validate(); err == nil {
		t.Error("api_key without api_secret validated")
	}
}

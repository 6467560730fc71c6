package tokenhandler

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
	"github.com/livekit/protocol/auth"
	"go.uber.org/zap"
)

// BenchmarkCreateRoom compares, in one run, the create-room handler with a
// bare net/http handler that decodes the same body and mints the same token.
// The workload is a meeting: every call asks for a token to a room that
// exists, as each participant does; placement is a fake in-memory placer.
// It reports both per-call times and handler/bare-throughput (target >= 0.9).
func BenchmarkCreateRoom(b *testing.B) {
	body := `{"room_name":"standup","user_name":"Alice"}`
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req createRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		yes := true
		tok, err := auth.NewAccessToken(key, secret).SetIdentity(uniqueIdentity(req.UserName)).SetName(req.UserName).
			SetMetadata(req.Metadata).SetValidFor(time.Hour).
			SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: req.RoomName, CanPublish: &yes, CanSubscribe: &yes, CanPublishData: &yes}).ToJWT()
		if err != nil {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(createResponse{RoomName: req.RoomName, Token: tok, URL: "wss://" + r.Host, ServerURL: "wss://" + r.Host})
	})
	f := newFixture(b)
	f.h.logger = zap.NewNop() // production logs at info: the per-call line is debug
	handler := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return f.h.ServeHTTP(w, r, nil)
	})
	request := func() (*httptest.ResponseRecorder, *http.Request) {
		r := httptest.NewRequest("POST", "http://livekit.example.com/api/create-room", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+authKey)
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		return httptest.NewRecorder(), r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
	}
	// the two alternate in one loop, so load on the machine hits both alike
	var bareNs, handlerNs time.Duration
	b.ReportAllocs()
	for b.Loop() {
		w, r := request()
		t0 := time.Now()
		bare.ServeHTTP(w, r)
		t1 := time.Now()
		w2, r2 := request()
		t2 := time.Now()
		_ = handler(w2, r2)
		t3 := time.Now()
		if w.Code != 200 || w2.Code != 200 {
			b.Fatalf("status %d %d: %s %s", w.Code, w2.Code, w.Body, w2.Body)
		}
		bareNs += t1.Sub(t0)
		handlerNs += t3.Sub(t2)
	}
	b.ReportMetric(float64(bareNs.Nanoseconds())/float64(b.N), "bare-ns/call")
	b.ReportMetric(float64(handlerNs.Nanoseconds())/float64(b.N), "handler-ns/call")
	b.ReportMetric(float64(bareNs)/float64(handlerNs), "handler/bare-throughput")
}

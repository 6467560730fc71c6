package livekitlb

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// BenchmarkRoomFromToken: reading the room from a LiveKit token, the other
// per-request cost of the handler.
func BenchmarkRoomFromToken(b *testing.B) {
	tok := mint(b, testKey, testSecret, "standup", 3600e9)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := roomFromToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAPIRoom: reading the room of a server API call from its JSON
// body (and putting the body back), the cost the proxy adds to a CreateRoom.
func BenchmarkAPIRoom(b *testing.B) {
	body := []byte(`{"name":"standup","empty_timeout":300,"max_participants":12,"metadata":"team"}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", roomServicePrefix+"CreateRoom", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if room, err := apiRoom(req, "CreateRoom"); err != nil || room != "standup" {
			b.Fatal(room, err)
		}
	}
}

// BenchmarkNearGeoIP: placing a client by its address in geoip_db, which a
// request pays only when it may open a room (a join, create-room).
func BenchmarkNearGeoIP(b *testing.B) {
	g, err := openGeoDB(geoTestDB, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	c := Cluster{geo: g}
	r := httptest.NewRequest("GET", "/rtc", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "198.51.100.7"}))
	b.ReportAllocs()
	for b.Loop() {
		if near := c.Near(r); near != "37.5665,126.978" {
			b.Fatal(near)
		}
	}
}

// Package harness runs the pieces of an integration test as real processes:
// Redis (redis.go: plain, replica or sentinel), LiveKit nodes (livekit.go),
// Caddy with the plugin (caddy.go) and LiveKit clients (client.go: plain
// SDK joins; participant.go: SDK joins that record their connection; signal.go:
// raw signal joins without WebRTC). Every process is killed when its test
// ends, and also (SIGKILL as parent-death signal) if the test binary dies.
//
// A Stack (stack.go) is Redis and N nodes with the reads tests share
// (room_node_map, the node that accepted a signal WebSocket, node names for
// messages); StartProxy puts a Caddy with a livekit_lb site in front of it.
// caddyfile.go builds the sites (LBSite, TokenSite, StockSite), admin.go
// reads Caddy's admin API (GET /livekit/nodes) and its JSON log, and Poll
// (poll.go: PollEvery, PollValue, PollErr) is every wait of the tests.
//
// A test package runs its tests through Main (netns.go), which puts them in a
// private network namespace that has only a loopback interface:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
//	func TestX(t *testing.T) {
//		s := harness.StartStack(t, 2, harness.NodeOptions{})
//		p := s.StartProxy(t, harness.LB{Options: []string{"load_measure rooms"}})
//		harness.Join(t, p.WS(), "room", "alice")
//		id := s.MustSignalNode(t, "alice") // == s.RoomNode("room")
//	}
//
// Node i (0-based) listens on 127.0.0.(i+2):7880. Inside the namespace the
// harness adds that IP to the loopback interface, and the node binds its ICE
// ports to it; clients get a server-reflexive candidate on 127.0.0.1 from a
// small STUN server of the harness (stun.go). So media, like signalling, uses
// loopback addresses only.
//
// Programs are found through LIVEKIT_SERVER_BIN, REDIS_SERVER_BIN and
// CADDY_BIN, else on PATH (CADDY_BIN unset: ./cmd/caddy of the repository is
// built once per test binary). LKLB_CLIENT_LOGS=1 shows the client SDK's logs;
// LKLB_HOST_NETWORK=1 runs without the private namespace.
package harness

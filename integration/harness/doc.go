// Package harness runs the pieces of an integration test as real processes:
// Redis (redis.go), LiveKit nodes (livekit.go), Caddy with the plugin
// (caddy.go) and LiveKit clients (client.go). Every process is killed when its
// test ends, and also (SIGKILL as parent-death signal) if the test binary dies.
//
// A test package runs its tests through Main (netns.go), which puts them in a
// private network namespace that has only a loopback interface:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
//	func TestX(t *testing.T) {
//		redis := harness.StartRedis(t)
//		nodes := harness.StartNodes(t, redis.Addr(), 2, harness.NodeOptions{})
//		harness.Join(t, nodes[0].URL(), "room", "alice")
//		id, ok := harness.SignalNodeOf(nodes, "alice") // nodes[0].ID(), true
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

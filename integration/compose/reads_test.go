package compose

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/livekit-lb/caddy-livekit/integration/harness"
)

// redisHash is HGETALL of key.
func (s *stack) redisHash(key string) map[string]string {
	lines := strings.Split(strings.TrimRight(s.dockerExec("redis", "redis-cli", "--raw", "hgetall", key), "\n"), "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(lines); i += 2 {
		m[lines[i]] = lines[i+1]
	}
	return m
}

// keysScript answers, for every key: key, type, sha1(DUMP), sha1(content), PTTL. The content
// digest is canonical (hash fields and set members sorted): a hash in hashtable encoding DUMPs its
// fields in the dict's iteration order, which a RESTORE does not always reproduce.
const keysScript = `local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local d = redis.call('DUMP', k)
  if d then
    local t = redis.call('TYPE', k).ok
    local c = {}
    if t == 'string' then c = {redis.call('GET', k)}
    elseif t == 'hash' then
      local h = redis.call('HGETALL', k)
      local f = {}
      for i = 1, #h, 2 do table.insert(f, h[i] .. '\0' .. h[i + 1]) end
      table.sort(f); c = f
    elseif t == 'set' then c = redis.call('SMEMBERS', k); table.sort(c)
    elseif t == 'zset' then c = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    elseif t == 'list' then c = redis.call('LRANGE', k, 0, -1)
    else c = {d} end
    table.insert(out, k); table.insert(out, t); table.insert(out, redis.sha1hex(d))
    table.insert(out, redis.sha1hex(table.concat(c, '\1'))); table.insert(out, tostring(redis.call('PTTL', k)))
  end
end
return out`

// keyState is one key as keysScript sees it.
type keyState struct {
	Type, Dump, Content string
	PTTL                int64
}

// redisKeys is every key's state.
func (s *stack) redisKeys() map[string]keyState {
	out := strings.TrimRight(s.dockerExec("redis", "redis-cli", "--raw", "eval", keysScript, "0"), "\n")
	m := map[string]keyState{}
	if out == "" {
		return m
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+4 < len(lines); i += 5 {
		var ttl int64
		fmt.Sscan(lines[i+4], &ttl)
		m[lines[i]] = keyState{Type: lines[i+1], Dump: lines[i+2], Content: lines[i+3], PTTL: ttl}
	}
	return m
}

// nodeIDs maps LiveKit node IDs to their service (livekit1...) through caddy livekit status.
func (s *stack) nodeIDs(caddy string) map[string]string {
	var st struct {
		Nodes []struct {
			ID string `json:"id"`
			IP string `json:"ip"`
		} `json:"nodes"`
	}
	out := s.dockerExec(caddy, "caddy", "livekit", "status", "--json", "--config", "/etc/caddy/Caddyfile")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		s.t.Fatalf("caddy livekit status --json: %v\n%s", err, out)
	}
	byIP := map[string]string{}
	for i, ip := range strings.Split(s.vars["NODES"], ",") {
		byIP[ip] = fmt.Sprintf("livekit%d", i+1)
	}
	for i, ip := range strings.Split(s.vars["PUBLIC_IPS"], ",") { // behind NAT, nodes register these
		if ip != "" {
			byIP[ip] = fmt.Sprintf("livekit%d", i+1)
		}
	}
	m := map[string]string{}
	for _, n := range st.Nodes {
		if svc, ok := byIP[n.IP]; ok {
			m[n.ID] = svc
		}
	}
	return m
}

// wsConnected maps identity -> node services whose log has "new client WS connected" for it.
func (s *stack) wsConnected(services ...string) map[string][]string {
	m := map[string][]string{}
	for _, svc := range services {
		id := s.container(svc)
		out, _ := exec.Command("docker", "logs", id).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if p, ok := harness.WSConnected(line); ok {
				m[p] = append(m[p], svc)
			}
		}
	}
	return m
}

// createRoom calls the create-room endpoint from the host, on the published loopback port.
func (s *stack) createRoom(portVar, room, identity string) {
	s.t.Helper()
	body := fmt.Sprintf(`{"room_name": %q, "user_name": %q, "identity": %q}`, room, identity, identity)
	status, b, err := harness.CreateRoom("http://127.0.0.1:"+s.vars[portVar], s.vars["CREATE_ROOM_KEY"], body, 15*time.Second)
	if err != nil {
		s.t.Fatalf("create-room %s: %v", room, err)
	}
	if status != 200 || !bytes.Contains(b, []byte(`"token"`)) {
		s.t.Fatalf("create-room %s: HTTP %d %s", room, status, b)
	}
}

package cluster

import (
	"sync"
	"time"
)

// placementCache remembers room -> node id briefly so that a known room costs
// no Redis round trip. Two generations are swapped every ttl instead of
// scanning for expired entries, so its cost never grows with the room count.
type placementCache struct {
	ttl time.Duration

	mu        sync.RWMutex
	cur, old  map[string]cachedPlacement
	rotatedAt int64
}

type cachedPlacement struct {
	nodeID  string
	expires int64 // unix nanos
}

func newPlacementCache(ttl time.Duration) *placementCache {
	return &placementCache{ttl: ttl, cur: map[string]cachedPlacement{}, old: map[string]cachedPlacement{}}
}

// get returns the cached node id of room and whether the entry is still
// fresh. An expired entry is still returned: while Redis is unreachable it
// is the best knowledge there is (no put rotates the generations then).
func (c *placementCache) get(room string, now time.Time) (id string, fresh, ok bool) {
	c.mu.RLock()
	p, ok := c.cur[room]
	if !ok {
		p, ok = c.old[room]
	}
	c.mu.RUnlock()
	return p.nodeID, ok && now.UnixNano() < p.expires, ok
}

func (c *placementCache) put(room, nodeID string, now time.Time) {
	n := now.UnixNano()
	c.mu.Lock()
	if n-c.rotatedAt >= int64(c.ttl) {
		c.old, c.cur = c.cur, make(map[string]cachedPlacement, len(c.cur))
		c.rotatedAt = n
	}
	c.cur[room] = cachedPlacement{nodeID: nodeID, expires: n + int64(c.ttl)}
	c.mu.Unlock()
}

func (c *placementCache) drop(room string) {
	c.mu.Lock()
	delete(c.cur, room)
	delete(c.old, room)
	c.mu.Unlock()
}

func (c *placementCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.old)
}

// clear empties the cache and returns what it held, fresh or not.
func (c *placementCache) clear() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.cur)+len(c.old))
	for room, p := range c.old {
		out[room] = p.nodeID
	}
	for room, p := range c.cur {
		out[room] = p.nodeID
	}
	c.cur, c.old = map[string]cachedPlacement{}, map[string]cachedPlacement{}
	return out
}

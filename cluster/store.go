package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// LiveKit's own keys (livekit-server pkg/routing/redisrouter.go).
const (
	nodesKey       = "nodes"
	roomNodeMapKey = "room_node_map"
)

// drainedKey is the proxy's own key (LiveKit never reads it): node ids or
// IPs that take no new rooms, set by `caddy livekit drain`. LiveKit rewrites
// its own node entry every 2 s, so a drain cannot be written there.
const drainedKey = "caddy_livekit:drained"

// deploymentsKey is the proxy's own key: per machine, the digest of the
// configuration deploy.sh last started there, so that `verify` can tell
// machines that run different settings.
const deploymentsKey = "caddy_livekit:deployments"

// Store is everything the proxy and its commands read from or write to
// Redis: redisStore (this file and ops.go) is the only code that talks to
// Redis, and tests swap in a fake (clustertest.Store).
type Store interface {
	// Nodes returns the `nodes` hash as it is: node id -> protobuf of
	// livekit.Node (decodeNode reads it; anyone may have written it).
	Nodes(ctx context.Context) (map[string]string, error)
	// RoomNode returns the node id that room_node_map names for room, or "".
	RoomNode(ctx context.Context, room string) (string, error)
	// PlaceRoom writes room -> nodeID only if the room has no placement, and
	// returns the placement that holds afterwards (ours or the winner's).
	PlaceRoom(ctx context.Context, room, nodeID string) (string, error)
	// ReplaceRoom moves room from oldID to newID only if it still names oldID,
	// and returns the placement that holds afterwards.
	ReplaceRoom(ctx context.Context, room, oldID, newID string) (string, error)
	// UnplaceRoom removes room's placement only if it still names nodeID.
	UnplaceRoom(ctx context.Context, room, nodeID string) error
	// ScanRooms pages through room_node_map (HSCAN): at most count entries
	// from cursor, and the cursor of the next page (0 at the end).
	ScanRooms(ctx context.Context, cursor uint64, count int64) (map[string]string, uint64, error)
	// Drained returns the node ids and IPs set aside by `caddy livekit drain`.
	Drained(ctx context.Context) (map[string]string, error)
	// SetDrained adds (or with on=false removes) a node id or IP.
	SetDrained(ctx context.Context, node string, on bool) error
	// ConfigGet reads a Redis server setting (CONFIG GET); for verify.
	ConfigGet(ctx context.Context, param string) (string, error)
	// Ping checks that Redis answers.
	Ping(ctx context.Context) error
	Close() error
}

// OpsStore is what the operator commands need beyond routing: backups and
// the deployment records (see ops.go).
type OpsStore interface {
	Store
	// Keys calls f with every key matching pattern, its TTL (0: none) and
	// its DUMP; keys that expire meanwhile are skipped.
	Keys(ctx context.Context, pattern string, f func(Key) error) error
	// PutKey writes a key back from its DUMP, replacing one of that name.
	PutKey(ctx context.Context, k Key) error
	// SetDeployment records machine's configuration digest.
	SetDeployment(ctx context.Context, machine, record string) error
	// Deployments returns every machine's record.
	Deployments(ctx context.Context) (map[string]string, error)
}

type redisStore struct {
	rc      redis.UniversalClient
	cluster bool // Redis Cluster: no SCAN across masters
}

// replaceScript is a compare-and-set on one hash field: LiveKit places rooms
// with HGET then HSET (livekit#1943), so a blind HSET could split a room.
var replaceScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return ARGV[3]
end
if cur == false then
  return ''
end
return cur
`)

func (s redisStore) Nodes(ctx context.Context) (map[string]string, error) {
	return s.rc.HGetAll(ours(ctx), nodesKey).Result()
}

func (s redisStore) RoomNode(ctx context.Context, room string) (string, error) {
	ctx = ours(ctx)
	id, err := s.rc.HGet(ctx, roomNodeMapKey, room).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return id, err
}

// placeScript is HSETNX that also takes a field holding "": an empty
// placement names no node, and would otherwise hold the room forever.
var placeScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false or cur == '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return ARGV[2]
end
return cur
`)

func (s redisStore) PlaceRoom(ctx context.Context, room, nodeID string) (string, error) {
	ctx = ours(ctx)
	return placeScript.Run(ctx, s.rc, []string{roomNodeMapKey}, room, nodeID).Text()
}

func (s redisStore) ReplaceRoom(ctx context.Context, room, oldID, newID string) (string, error) {
	ctx = ours(ctx)
	cur, err := replaceScript.Run(ctx, s.rc, []string{roomNodeMapKey}, room, oldID, newID).Text()
	if err != nil {
		return "", err
	}
	if cur == "" {
		// the placement vanished (room closed): place it afresh
		return s.PlaceRoom(ctx, room, newID)
	}
	return cur, nil
}

var unplaceScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

func (s redisStore) UnplaceRoom(ctx context.Context, room, nodeID string) error {
	ctx = ours(ctx)
	return unplaceScript.Run(ctx, s.rc, []string{roomNodeMapKey}, room, nodeID).Err()
}

func (s redisStore) ScanRooms(ctx context.Context, cursor uint64, count int64) (map[string]string, uint64, error) {
	ctx = ours(ctx)
	kv, next, err := s.rc.HScan(ctx, roomNodeMapKey, cursor, "", count).Result()
	if err != nil {
		return nil, 0, err
	}
	rooms := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		rooms[kv[i]] = kv[i+1]
	}
	return rooms, next, nil
}

func (s redisStore) Drained(ctx context.Context) (map[string]string, error) {
	ctx = ours(ctx)
	return s.rc.HGetAll(ctx, drainedKey).Result()
}

func (s redisStore) SetDrained(ctx context.Context, node string, on bool) error {
	ctx = ours(ctx)
	if on {
		return s.rc.HSet(ctx, drainedKey, node, time.Now().UTC().Format(time.RFC3339)).Err()
	}
	return s.rc.HDel(ctx, drainedKey, node).Err()
}

func (s redisStore) ConfigGet(ctx context.Context, param string) (string, error) {
	ctx = ours(ctx)
	m, err := s.rc.ConfigGet(ctx, param).Result()
	if err != nil {
		return "", err
	}
	return m[param], nil
}

func (s redisStore) Ping(ctx context.Context) error { return s.rc.Ping(ours(ctx)).Err() }

func (s redisStore) Close() error { return s.rc.Close() }

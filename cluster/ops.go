package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key is one Redis key in Redis' own DUMP format, so that every type (hash,
// set, string...) and its TTL survive a backup.
type Key struct {
	Name string
	TTL  time.Duration // 0: no expiry
	Dump []byte
}

// ErrClusterBackup: SCAN walks one server, so a Redis Cluster is backed up
// master by master with its own tools.
var ErrClusterBackup = errors.New("backup and restore do not support Redis Cluster; back up each master with its own tools")

func (s redisStore) Keys(ctx context.Context, pattern string, f func(Key) error) error {
	if s.cluster {
		return ErrClusterBackup
	}
	ctx = ours(ctx)
	iter := s.rc.Scan(ctx, 0, pattern, 500).Iterator()
	for iter.Next(ctx) {
		name := iter.Val()
		dump, err := s.rc.Dump(ctx, name).Result()
		if errors.Is(err, redis.Nil) {
			continue // expired meanwhile
		}
		if err != nil {
			return err
		}
		ttl, err := s.rc.PTTL(ctx, name).Result()
		if err != nil {
			return err
		}
		if err := f(Key{Name: name, TTL: max(ttl, 0), Dump: []byte(dump)}); err != nil {
			return err
		}
	}
	return iter.Err()
}

func (s redisStore) PutKey(ctx context.Context, k Key) error {
	if s.cluster {
		return ErrClusterBackup
	}
	return s.rc.RestoreReplace(ours(ctx), k.Name, k.TTL, string(k.Dump)).Err()
}

func (s redisStore) SetDeployment(ctx context.Context, machine, record string) error {
	return s.rc.HSet(ours(ctx), deploymentsKey, machine, record).Err()
}

func (s redisStore) Deployments(ctx context.Context) (map[string]string, error) {
	return s.rc.HGetAll(ours(ctx), deploymentsKey).Result()
}

var errNoOps = errors.New("this store has no operator calls")

// Backup calls f with every key of the cluster's Redis that matches pattern.
func (c *Cluster) Backup(ctx context.Context, pattern string, f func(Key) error) error {
	if c.ops == nil {
		return errNoOps
	}
	return c.ops.Keys(ctx, pattern, f)
}

// RestoreKey writes one key of a backup back, replacing one of that name.
func (c *Cluster) RestoreKey(ctx context.Context, k Key) error {
	if c.ops == nil {
		return errNoOps
	}
	return c.ops.PutKey(ctx, k)
}

// RecordDeployment records the digest of the configuration a machine runs.
func (c *Cluster) RecordDeployment(ctx context.Context, machine, record string) error {
	if c.ops == nil {
		return errNoOps
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	return redisErr(c.ops.SetDeployment(ctx, machine, record))
}

// Deployments returns every machine's recorded configuration digest.
func (c *Cluster) Deployments(ctx context.Context) (map[string]string, error) {
	if c.ops == nil {
		return nil, errNoOps
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	m, err := c.ops.Deployments(ctx)
	return m, redisErr(err)
}

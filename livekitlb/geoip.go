package livekitlb

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"go.uber.org/zap"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

// geoDB finds where a client is from its address, in a MaxMind database the
// operator gives (geoip_db: GeoLite2-City, GeoIP2-City, or any MMDB whose
// records carry location.latitude and location.longitude). Its contents are
// outside input: a record with no or impossible coordinates is no answer.
// It is held in memory, not mapped: a file replaced or rewritten under a
// running proxy cannot change or crash its lookups.
type geoDB struct {
	r *maxminddb.Reader
}

// geoRecord is the part of a City record that places a client.
type geoRecord struct {
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// geoDBs shares one copy of each geoip_db file (by path, size and
// modification time) among the modules of a config and across reloads; a
// file replaced since is read again.
var geoDBs = caddy.NewUsagePool()

// pooledGeo is a pool entry: memory only, which the GC frees once no module
// and no request still holds it (never unmapped under a lookup).
type pooledGeo struct{ *geoDB }

func (pooledGeo) Destruct() error { return nil }

// loadGeoDB returns the shared copy of path and its pool key, for the
// module's Cleanup to give back.
func loadGeoDB(path string, log *zap.Logger) (*geoDB, string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("geoip_db %s: %w", path, err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano())
	v, _, err := geoDBs.LoadOrNew(key, func() (caddy.Destructor, error) {
		g, err := openGeoDB(path, log)
		return pooledGeo{g}, err
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledGeo).geoDB, key, nil
}

// openGeoDB reads path, saying what it holds; a database type without
// "City" in its name carries no coordinates (GeoLite2-Country, ASN), which
// is logged, not refused: a custom MMDB may still have them.
func openGeoDB(path string, log *zap.Logger) (*geoDB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("geoip_db %s: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("geoip_db %s: not a MaxMind database (.mmdb): %w", path, err)
	}
	m := r.Metadata
	log.Info("geoip_db loaded", zap.String("file", path), zap.String("type", m.DatabaseType),
		zap.Time("built", m.BuildTime()), zap.Uint("nodes", m.NodeCount))
	if !strings.Contains(m.DatabaseType, "City") {
		log.Warn("geoip_db is not a City database: clients are placed only where its records have location.latitude and location.longitude",
			zap.String("file", path), zap.String("type", m.DatabaseType))
	}
	return &geoDB{r: r}, nil
}

// near is the client at addr as "lat,lon" (what region placement takes),
// or "" when the database does not place it.
func (g *geoDB) near(addr netip.Addr) string {
	if g == nil || !addr.IsValid() {
		return ""
	}
	var rec geoRecord
	if err := g.r.Lookup(addr.Unmap()).Decode(&rec); err != nil {
		return ""
	}
	lat, lon := rec.Location.Latitude, rec.Location.Longitude
	if lat == nil || lon == nil || !cluster.OnEarth(*lat, *lon) {
		return ""
	}
	return strconv.FormatFloat(*lat, 'f', -1, 64) + "," + strconv.FormatFloat(*lon, 'f', -1, 64)
}

package cluster

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Region is one entry of LiveKit's node_selector.regions: the name nodes
// carry in their `region:` config, and where it is.
type Region struct {
	Name string  `json:"name"`
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
}

type nearKey struct{}

// Near returns ctx saying where the request's client is, for a room it
// places: a region name, or "lat,lon". Known rooms stay where they are.
func Near(ctx context.Context, near string) context.Context {
	if near == "" {
		return ctx
	}
	return NearBy(ctx, func() string { return near })
}

// NearBy is Near with the answer looked up only if a room is placed (a
// GeoIP lookup that a known room's requests need not pay); near must be
// safe to call more than once.
func NearBy(ctx context.Context, near func() string) context.Context {
	return context.WithValue(ctx, nearKey{}, near)
}

func nearFrom(ctx context.Context) func() string {
	if f, ok := ctx.Value(nearKey{}).(func() string); ok {
		return f
	}
	return func() string { return "" }
}

// regions places new rooms in the region nearest to their client (or to the
// proxy's own region), as LiveKit's regionaware selector does from the node
// that receives the join.
type regions struct {
	byName map[string]Region
	own    string
}

func newRegions(list []Region, own string) (regions, error) {
	r := regions{byName: map[string]Region{}, own: own}
	for _, g := range list {
		switch {
		case g.Name == "":
			return r, fmt.Errorf("regions: a region without a name")
		case !OnEarth(g.Lat, g.Lon):
			return r, fmt.Errorf("regions: %s at %v,%v: latitude -90..90, longitude -180..180", g.Name, g.Lat, g.Lon)
		}
		if _, dup := r.byName[g.Name]; dup {
			return r, fmt.Errorf("regions: %s listed twice", g.Name)
		}
		r.byName[g.Name] = g
	}
	if _, ok := r.byName[own]; own != "" && !ok {
		return r, fmt.Errorf("region %q is not in regions (its lat/lon are needed, as for LiveKit's regionaware selector)", own)
	}
	return r, nil
}

// origin is where new rooms go near: near when it names a region or holds
// "lat,lon", else the proxy's own region; ok is false when neither is known.
func (r regions) origin(near string) (lat, lon float64, ok bool) {
	if len(r.byName) == 0 {
		return 0, 0, false
	}
	if g, found := r.byName[near]; found {
		return g.Lat, g.Lon, true
	}
	if lat, lon, ok := ParseLatLon(near); ok {
		return lat, lon, true
	}
	if g, found := r.byName[r.own]; found {
		return g.Lat, g.Lon, true
	}
	return 0, 0, false
}

// nearest narrows ok to the nodes of the region nearest to near that has a
// node ok accepts; nodes of regions not listed come last, as in LiveKit.
// Without regions, or with nothing known of near, it is ok itself.
func (r regions) nearest(nodes []*Node, near string, ok func(*Node) bool) func(*Node) bool {
	lat, lon, known := r.origin(near)
	if !known {
		return ok
	}
	best, bestDist := "", math.Inf(1)
	found := false
	for _, n := range nodes {
		if !ok(n) {
			continue
		}
		d := math.Inf(1)
		if g, listed := r.byName[n.Region]; listed {
			d = Distance(lat, lon, g.Lat, g.Lon)
		}
		if !found || d < bestDist {
			best, bestDist, found = n.Region, d, true
		}
	}
	if !found || math.IsInf(bestDist, 1) {
		return ok // no listed region has a node: any node ok accepts
	}
	return func(n *Node) bool { return n.Region == best && ok(n) }
}

// OnEarth: lat and lon (degrees) are a point, latitude -90..90 and
// longitude -180..180 (NaN is not).
func OnEarth(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// ParseLatLon reads "lat,lon" in degrees, as a place a client is at; ok is
// false for anything else, or a point that is not on Earth.
func ParseLatLon(s string) (lat, lon float64, ok bool) {
	la, lo, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	lat, errLat := strconv.ParseFloat(strings.TrimSpace(la), 64)
	lon, errLon := strconv.ParseFloat(strings.TrimSpace(lo), 64)
	if errLat != nil || errLon != nil || !OnEarth(lat, lon) {
		return 0, 0, false
	}
	return lat, lon, true
}

// Distance is the great-circle distance in meters, as LiveKit's
// regionaware selector computes it (haversine, Earth radius 6378100 m).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6378100
	hsin := func(t float64) float64 { return math.Pow(math.Sin(t/2), 2) }
	la1, lo1, la2, lo2 := lat1*math.Pi/180, lon1*math.Pi/180, lat2*math.Pi/180, lon2*math.Pi/180
	h := hsin(la2-la1) + math.Cos(la1)*math.Cos(la2)*hsin(lo2-lo1)
	return 2 * r * math.Asin(math.Sqrt(h))
}

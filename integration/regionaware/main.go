// Command regionaware writes cluster/testdata/regionaware.json: random
// clusters (regions with their lat/lon, nodes in them with a state, a
// sysload and a region, an origin region, a sysload_limit) and the node
// that LiveKit's own regionaware selector picks for each, so that the
// cluster package's TestRegionAwareLikeLiveKit can hold our placement
// against it without depending on livekit-server.
//
// It is a module of its own: livekit-server v1.13.5's pkg/config does not
// build against the newer mediatransportutil that server-sdk-go brings into
// the integration module. Regenerate (deterministic, from a fixed seed)
// after a LiveKit upgrade:
//
//	cd integration/regionaware && go run . -o ../../cluster/testdata/regionaware.json
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/livekit/livekit-server/pkg/config"
	"github.com/livekit/livekit-server/pkg/routing/selector"
	"github.com/livekit/protocol/livekit"
)

// Kinds of case. In "nearest" and "filtered" LiveKit's choice is defined
// and ours must be the same; the other two are where we differ on purpose.
const (
	// every node serving, fresh, in a listed region; no limit
	kindNearest = "nearest"
	// draining and stale nodes, nodes of unlisted regions and of none,
	// nodes over sysload_limit; at least one listed node takes the room
	kindFiltered = "filtered"
	// every available node over sysload_limit: LiveKit's limit is soft (it
	// falls back to every node and picks by region), ours refuses (503)
	kindAllOver = "all_over_limit"
	// no available node in a listed region: LiveKit keeps only the nodes
	// without a region when there are any (its nearestRegion starts as "",
	// which matches them), ours takes any node by load
	kindUnlisted = "unlisted_only"
)

// Case is one cluster and LiveKit's answer for it.
type Case struct {
	Kind         string   `json:"kind"`
	Regions      []Region `json:"regions"`
	Origin       string   `json:"origin"`
	SysloadLimit float32  `json:"sysload_limit,omitempty"`
	Nodes        []Node   `json:"nodes"`
	// LiveKit's pick and its region
	Node   string `json:"livekit_node"`
	Region string `json:"livekit_region"`
	// Clear: among the nodes LiveKit chose from, the lowest sysload is
	// at least 0.1 below the next, beyond our load tolerance (0.05)
	Clear bool `json:"clear,omitempty"`
}

type Region struct {
	Name string  `json:"name"`
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
}

type Node struct {
	ID      string  `json:"id"`
	Region  string  `json:"region"`
	State   string  `json:"state,omitempty"` // "" (serving), shutting_down, stale (serving, stats a minute old)
	Sysload float32 `json:"sysload"`
}

func main() {
	out := flag.String("o", "regionaware.json", "output file")
	flag.Parse()
	rng := rand.New(rand.NewPCG(15, 2026))
	var cases []Case
	for _, k := range []struct {
		kind string
		n    int
	}{{kindNearest, 80}, {kindFiltered, 120}, {kindAllOver, 20}, {kindUnlisted, 20}} {
		for made := 0; made < k.n; {
			if c, ok := generate(rng, k.kind); ok {
				cases = append(cases, c)
				made++
			}
		}
	}
	var b bytes.Buffer
	b.WriteString("{\"generator\": \"integration/regionaware: livekit-server v1.13.5 selector.RegionAwareSelector, sort_by sysload, algorithm lowest\",\n\"cases\": [\n")
	for i, c := range cases {
		line, err := json.Marshal(c)
		if err != nil {
			log.Fatal(err)
		}
		b.Write(line)
		if i < len(cases)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("]}\n")
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d cases written to %s\n", len(cases), *out)
}

// generate makes one case of kind, and reports whether it is one: a case
// whose nearest candidate regions are less than a kilometre apart in
// distance from the origin is dropped (a tie is broken by node order).
func generate(rng *rand.Rand, kind string) (Case, bool) {
	c := Case{Kind: kind}
	for i := range 2 + rng.IntN(5) {
		c.Regions = append(c.Regions, Region{Name: fmt.Sprintf("r%d", i),
			Lat: round(rng.Float64()*140 - 65), Lon: round(rng.Float64()*360 - 180)})
	}
	c.Origin = c.Regions[rng.IntN(len(c.Regions))].Name
	if kind != kindNearest {
		c.SysloadLimit = float32(rng.IntN(8)+2)/10 + 0.05 // 0.25 .. 0.95: never equal to a sysload below
	}
	for i := range 1 + rng.IntN(8) {
		n := Node{ID: fmt.Sprintf("ND_%d", i), Sysload: float32(rng.IntN(150)) / 100,
			Region: c.Regions[rng.IntN(len(c.Regions))].Name}
		if kind == kindFiltered || kind == kindUnlisted {
			switch rng.IntN(6) {
			case 0:
				n.Region = "mars"
			case 1:
				n.Region = ""
			}
			switch rng.IntN(6) {
			case 0:
				n.State = "shutting_down"
			case 1:
				n.State = "stale"
			}
		}
		if kind == kindAllOver {
			n.Sysload = c.SysloadLimit + float32(rng.IntN(50))/100 + 0.05
		}
		c.Nodes = append(c.Nodes, n)
	}
	if kind == kindUnlisted {
		c.Nodes = append(c.Nodes, Node{ID: "ND_mars", Region: "mars", Sysload: float32(rng.IntN(150)) / 100},
			Node{ID: "ND_none", Region: "", Sysload: float32(rng.IntN(150)) / 100})
	}

	// the nodes a room may go to: available, under the limit when one is
	listed := map[string]Region{}
	for _, g := range c.Regions {
		listed[g.Name] = g
	}
	var open []Node
	for _, n := range c.Nodes {
		if n.State == "" && (c.SysloadLimit == 0 || n.Sysload < c.SysloadLimit) {
			open = append(open, n)
		}
	}
	openListed := slices.ContainsFunc(open, func(n Node) bool { _, ok := listed[n.Region]; return ok })
	availListed := slices.ContainsFunc(c.Nodes, func(n Node) bool { _, ok := listed[n.Region]; return ok && n.State == "" })
	switch kind {
	case kindNearest, kindFiltered:
		if !openListed {
			return c, false
		}
	case kindAllOver:
		if len(open) > 0 || !availListed {
			return c, false
		}
	case kindUnlisted:
		if availListed || len(open) == 0 {
			return c, false
		}
	}

	// no near tie between the regions LiveKit chooses among
	candidates := open
	if kind == kindAllOver {
		candidates = c.Nodes
	}
	o := listed[c.Origin]
	var dists []float64
	for _, n := range candidates {
		if g, ok := listed[n.Region]; ok && n.State == "" {
			d := haversine(o.Lat, o.Lon, g.Lat, g.Lon)
			if !slices.Contains(dists, d) {
				dists = append(dists, d)
			}
		}
	}
	slices.Sort(dists)
	if len(dists) > 1 && dists[1]-dists[0] < 1000 {
		return c, false
	}

	picked, from := livekitPick(c)
	c.Node, c.Region = picked.GetId(), picked.GetRegion()
	loads := []float32{}
	for _, n := range from {
		loads = append(loads, n.GetStats().GetLoadAvgLast1Min())
	}
	slices.Sort(loads)
	c.Clear = len(loads) == 1 || loads[1]-loads[0] >= 0.1
	return c, true
}

// livekitPick runs LiveKit's selector on c, and returns its pick and the
// nodes of the pick's region it chose among (for Clear).
func livekitPick(c Case) (*livekit.Node, []*livekit.Node) {
	var regions []config.RegionConfig
	for _, g := range c.Regions {
		regions = append(regions, config.RegionConfig{Name: g.Name, Lat: g.Lat, Lon: g.Lon})
	}
	sel, err := selector.NewRegionAwareSelector(c.Origin, regions, "sysload", "lowest")
	if err != nil {
		log.Fatal(err)
	}
	sel.SysloadLimit = c.SysloadLimit
	now := time.Now().Unix()
	var nodes []*livekit.Node
	for _, n := range c.Nodes {
		ln := &livekit.Node{Id: n.ID, Region: n.Region, State: livekit.NodeState_SERVING,
			Stats: &livekit.NodeStats{UpdatedAt: now, NumCpus: 1, LoadAvgLast1Min: n.Sysload}}
		switch n.State {
		case "shutting_down":
			ln.State = livekit.NodeState_SHUTTING_DOWN
		case "stale":
			ln.Stats.UpdatedAt = now - 60
		}
		nodes = append(nodes, ln)
	}
	picked, err := sel.SelectNode(slices.Clone(nodes))
	if err != nil {
		log.Fatalf("%+v: %v", c, err)
	}
	var from []*livekit.Node
	for _, n := range nodes {
		if n.Region == picked.Region && n.State == livekit.NodeState_SERVING && n.Stats.UpdatedAt == now &&
			(c.SysloadLimit == 0 || c.Kind == kindAllOver || n.Stats.LoadAvgLast1Min < c.SysloadLimit) {
			from = append(from, n)
		}
	}
	return picked, from
}

// round keeps four decimals, as a region's lat/lon in a livekit.yaml.
func round(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// haversine is LiveKit's distanceBetween, for the tie check only.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	hsin := func(t float64) float64 { return math.Pow(math.Sin(t/2), 2) }
	la1, lo1, la2, lo2 := lat1*math.Pi/180, lon1*math.Pi/180, lat2*math.Pi/180, lon2*math.Pi/180
	h := hsin(la2-la1) + math.Cos(la1)*math.Cos(la2)*hsin(lo2-lo1)
	return 2 * 6378100 * math.Asin(math.Sqrt(h))
}

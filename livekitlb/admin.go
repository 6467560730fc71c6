package livekitlb

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/caddyserver/caddy/v2"

	"github.com/livekit-lb/caddy-livekit/cluster"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the proxy's view of its LiveKit clusters on Caddy's admin
// endpoint:
//
//	GET /livekit/nodes                       every node with state, load, stats age and the proxy's liveness view
//	GET /livekit/rooms?node=&cursor=&count=  one page of room_node_map (count default 100, max 1000)
//
// It is on by default in our builds, as every admin module Caddy loads.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.livekit",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/livekit/nodes", Handler: caddy.AdminHandlerFunc(a.nodes)},
		{Pattern: "/livekit/rooms", Handler: caddy.AdminHandlerFunc(a.rooms)},
	}
}

// NodesView is the JSON of /livekit/nodes.
type NodesView struct {
	RedisReachable bool                 `json:"redis_reachable"`
	Nodes          []cluster.NodeStatus `json:"nodes"`
	// Regions sums the nodes up by region (absent when none has one).
	Regions []cluster.RegionStatus `json:"regions,omitempty"`
	// Entries of Redis' `nodes` hash that were not routed to, and why.
	Ignored []cluster.BadNode `json:"ignored_entries,omitempty"`
}

// RoomsView is the JSON of /livekit/rooms.
type RoomsView struct {
	Rooms []RoomPlacement `json:"rooms"`
	// NextCursor continues the listing; 0 when it is complete.
	NextCursor uint64 `json:"next_cursor"`
}

// RoomPlacement is one room_node_map entry.
type RoomPlacement struct {
	Room string `json:"room"`
	Node string `json:"node"`
}

func (AdminAPI) nodes(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	view := NodesView{RedisReachable: true, Nodes: []cluster.NodeStatus{}}
	for _, reg := range pooledClusters() {
		view.RedisReachable = view.RedisReachable && reg.RedisReachable()
		view.Nodes = append(view.Nodes, reg.Status()...)
		view.Ignored = append(view.Ignored, reg.BadNodes()...)
	}
	view.Regions = cluster.Regions(view.Nodes)
	return writeJSON(w, view)
}

func (AdminAPI) rooms(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	q := r.URL.Query()
	var cursor uint64
	var err error
	if c := q.Get("cursor"); c != "" {
		if cursor, err = strconv.ParseUint(c, 10, 64); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("cursor must be a number")}
		}
	}
	count := int64(100)
	if c := q.Get("count"); c != "" {
		if count, err = strconv.ParseInt(c, 10, 64); err != nil || count < 1 || count > 1000 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("count must be 1 to 1000")}
		}
	}
	regs := pooledClusters()
	if len(regs) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no livekit cluster is configured")}
	}
	page, next, err := regs[0].Rooms(r.Context(), cursor, count)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	view := RoomsView{Rooms: []RoomPlacement{}, NextCursor: next}
	node := q.Get("node")
	for room, id := range page {
		if node == "" || node == id {
			view.Rooms = append(view.Rooms, RoomPlacement{Room: room, Node: id})
		}
	}
	sort.Slice(view.Rooms, func(i, j int) bool { return view.Rooms[i].Room < view.Rooms[j].Room })
	return writeJSON(w, view)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Interface guard
var _ caddy.AdminRouter = (*AdminAPI)(nil)

package livekitcmd

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/livekit-lb/caddy-livekit/cluster"
	"github.com/livekit-lb/caddy-livekit/livekitlb"
)

// statusCmd prints every node as this proxy would see it, then one line
// per ignored `nodes` entry.
func statusCmd(_ context.Context, e *env) error {
	nodes := e.reg.Status()
	regions := cluster.Regions(nodes)
	if e.json {
		return writeJSON(e.out, livekitlb.NodesView{RedisReachable: e.reg.RedisReachable(), Nodes: nodes, Regions: regions, Ignored: e.reg.BadNodes()})
	}
	w := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	region := func(n cluster.NodeStatus) string { return "" } // a column only where nodes have regions
	if regions != nil {
		fmt.Fprint(w, "REGION\t")
		region = func(n cluster.NodeStatus) string { return orDash(n.Region) + "\t" }
	}
	fmt.Fprintln(w, "NODE\tADDRESS\tSTATE\tROUTABLE\tSYSLOAD\tROOMS\tCLIENTS\tSTATS AGE")
	for _, n := range nodes {
		state := n.State
		if n.Drained {
			state += " (drained)"
		}
		if n.Full {
			state += " (full)"
		}
		fmt.Fprint(w, region(n))
		routable := "yes"
		switch {
		case n.Dial == "":
			routable = "no: outside allow_networks"
		case n.Unreachable:
			routable = "no: not answering"
		case !n.Routable:
			routable = "no"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f\t%d\t%d\t%.1fs\n", n.ID, orIP(n), state, routable, n.Sysload, n.Rooms, n.Clients, n.StatsAge)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(w, "(no nodes registered in Redis)")
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if regions != nil {
		fmt.Fprintln(e.out)
		w = tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "REGION\tROUTABLE NODES\tTAKING NEW ROOMS\tROOMS\tCLIENTS")
		for _, r := range regions {
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", orDash(r.Region), r.Nodes, r.NewRooms, r.Rooms, r.Clients)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	for _, b := range e.reg.BadNodes() {
		fmt.Fprintln(e.out, "PROBLEM: "+ignoredEntry(b))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// orIP is where the proxy dials the node, after the address the node
// registers when they differ (a node_addresses mapping, e.g. behind NAT).
func orIP(n cluster.NodeStatus) string {
	switch {
	case n.Dial == "":
		return n.IP
	case dialHost(n.Dial) == n.IP:
		return n.Dial
	}
	return n.IP + " via " + n.Dial
}

func ignoredEntry(b cluster.BadNode) string {
	return fmt.Sprintf("nodes entry %s ignored: %s", b.Field, b.Reason)
}

// roomsCmd lists room_node_map, sorted by room, optionally for one node. A
// room placed on a node id that no longer has an entry in Redis' `nodes` is
// marked "(node gone)" (JSON: node_gone): the proxy re-places it when its
// participants join again.
func roomsCmd(ctx context.Context, e *env) error {
	node, _ := e.cmd.Flags().GetString("node")
	var all []roomRow
	var cursor uint64
	for {
		page, next, err := e.reg.Rooms(ctx, cursor, 1000)
		if err != nil {
			return err
		}
		for room, id := range page {
			if node == "" || node == id {
				all = append(all, roomRow{RoomPlacement: livekitlb.RoomPlacement{Room: room, Node: id}})
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Room < all[j].Room })
	gone := nodeGone(e.reg)
	for i := range all {
		all[i].NodeGone = gone(all[i].Node)
	}
	if e.json {
		if all == nil {
			all = []roomRow{}
		}
		return writeJSON(e.out, struct {
			Rooms      []roomRow `json:"rooms"`
			NextCursor uint64    `json:"next_cursor"`
		}{Rooms: all})
	}
	w := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ROOM\tNODE")
	for _, r := range all {
		note := ""
		if r.NodeGone {
			note = " (node gone)"
		}
		fmt.Fprintf(w, "%s\t%s%s\n", r.Room, r.Node, note)
	}
	fmt.Fprintf(w, "(%d rooms)\n", len(all))
	return w.Flush()
}

// roomRow is a room_node_map entry as `rooms` shows it (livekitlb.RoomsView's
// entries, and whether the node is gone).
type roomRow struct {
	livekitlb.RoomPlacement
	NodeGone bool `json:"node_gone,omitempty"`
}

// nodeGone reports whether a node id has no entry in Redis' `nodes`, not even
// one ignored as unreadable (those are named by cluster.Quote).
func nodeGone(reg *cluster.Cluster) func(id string) bool {
	known := map[string]bool{}
	for _, n := range reg.Status() {
		known[n.ID] = true
	}
	for _, b := range reg.BadNodes() {
		known[b.Field] = true
	}
	return func(id string) bool { return !known[id] && !known[cluster.Quote(id)] }
}

package main

import (
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// selectedPair describes the candidate pair a peer connection carries its media on, as its stats
// report it: the local candidate's type ("relay" for TURN), address (for a relay candidate: the
// TURN server's relayed address, so the node whose TURN allocated it) and relay protocol ("tls"
// for TURN over TLS), and the remote candidate's address. It waits up to wait for a pair to be
// selected.
func selectedPair(pc *webrtc.PeerConnection, wait time.Duration) (map[string]any, error) {
	if pc == nil {
		return nil, fmt.Errorf("no peer connection")
	}
	deadline := time.Now().Add(wait)
	for {
		report := pc.GetStats()
		for _, s := range report {
			pair, ok := s.(webrtc.ICECandidatePairStats)
			if !ok || !pair.Nominated || pair.State != webrtc.StatsICECandidatePairStateSucceeded {
				continue
			}
			local, lok := report[pair.LocalCandidateID].(webrtc.ICECandidateStats)
			remote, rok := report[pair.RemoteCandidateID].(webrtc.ICECandidateStats)
			if !lok || !rok {
				continue
			}
			return map[string]any{
				"local_type": local.CandidateType.String(), "local_ip": local.IP, "local_port": local.Port,
				"relay_protocol": local.RelayProtocol, "local_protocol": local.Protocol,
				"remote_type": remote.CandidateType.String(), "remote_ip": remote.IP, "remote_port": remote.Port,
			}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no selected candidate pair within %s", wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

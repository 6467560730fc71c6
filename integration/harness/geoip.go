package harness

import (
	"bytes"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// GeoPlace is a City record's location, as MaxMind's databases carry it.
func GeoPlace(lat, lon float64) mmdbtype.Map {
	return mmdbtype.Map{"location": mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon)}}
}

// GeoDB is a MaxMind database (MMDB, IPv6 with IPv4 aliased, reserved
// networks such as loopback allowed) with record for each network (CIDR),
// for the proxy's geoip_db. Its bytes depend on records only.
func GeoDB(records map[string]mmdbtype.Map) ([]byte, error) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "LiveKit-LB-Test-City",
		Description:             map[string]string{"en": "caddy-livekit tests: places of test client addresses"},
		IncludeReservedNetworks: true,
		BuildEpoch:              1764720000, // fixed: the same records, the same file
		RecordSize:              24,
	})
	if err != nil {
		return nil, err
	}
	for cidr, rec := range records {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, err
		}
		if err := tree.Insert(network, rec); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if _, err := tree.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteGeoDB writes GeoDB(records) to path.
func WriteGeoDB(path string, records map[string]mmdbtype.Map) error {
	b, err := GeoDB(records)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

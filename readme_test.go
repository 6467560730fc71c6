package caddylivekit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// readmeSyntax returns the options README's syntax block for directive
// lists, and the arguments shown for each (nested redis options included).
func readmeSyntax(t *testing.T, directive string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(b), "```caddyfile\n"+directive+" [<matcher>]")
	if start < 0 {
		t.Fatalf("README has no syntax block for %s", directive)
	}
	block := string(b)[start:]
	block = block[strings.Index(block, "\n")+1 : strings.Index(block, "\n```")]
	opts := map[string]string{}
	inRegions := false // the lines of the regions block are its entries, not options
	for _, line := range strings.Split(block, "\n")[1:] {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if inRegions {
			inRegions = len(f) == 0 || f[0] != "}"
			continue
		}
		if len(f) == 0 || f[0] == "}" {
			continue
		}
		if f[0] == "regions" {
			inRegions = true
		}
		if f[0] == "transport" { // the example of a reverse_proxy subdirective
			break
		}
		opts[f[0]] = strings.Join(f[1:], " ")
	}
	return opts
}

// parserOptions returns the option names the Caddyfile parsers know: the
// string cases and the string keys of the option tables in the named
// functions.
func parserOptions(t *testing.T, file string, funcs ...string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || !slices.Contains(funcs, fn.Name.Name) {
			continue
		}
		str := func(e ast.Expr) {
			if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				out = append(out, s)
			}
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CaseClause:
				for _, e := range n.List {
					str(e)
				}
			case *ast.BinaryExpr: // name == "db"
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "name" && n.Op == token.EQL {
					str(n.Y)
				}
			case *ast.KeyValueExpr:
				str(n.Key)
			}
			return true
		})
	}
	return out
}

// README's syntax blocks name exactly the options the parsers take.
func TestReadmeSyntaxMatchesParser(t *testing.T) {
	cluster := parserOptions(t, "livekitlb/clusteroptions.go", "UnmarshalOption", "unmarshalRedis")
	lb := append(parserOptions(t, "livekitlb/caddyfile.go", "unmarshal"), cluster...)
	token := parserOptions(t, "tokenhandler/caddyfile.go", "unmarshalOption")
	for _, c := range []struct {
		directive string
		parsed    []string
		skip      []string // refused on purpose, or shown as "redis { ... }"
	}{
		{"livekit_lb", lb, []string{"to", "dynamic"}},
		{"livekit_token", token, nil},
	} {
		doc := readmeSyntax(t, c.directive)
		for _, o := range c.parsed {
			if _, ok := doc[o]; !ok && !slices.Contains(c.skip, o) {
				t.Errorf("%s: README's syntax lacks %q, which the parser takes", c.directive, o)
			}
		}
		for o := range doc {
			if !slices.Contains(c.parsed, o) && !(c.directive == "livekit_token" && o == "redis") {
				t.Errorf("%s: README shows %q, which the parser does not take", c.directive, o)
			}
		}
	}
}

// Every option of README's livekit_lb and livekit_token syntax, written
// with the arguments it shows, adapts.
func TestReadmeSyntaxAdapts(t *testing.T) {
	for _, directive := range []string{"livekit_lb", "livekit_token"} {
		for opt, args := range readmeSyntax(t, directive) {
			if opt == "redis" {
				continue // its options are read one by one below
			}
			redis, line := "redis 127.0.0.1:6379", opt+" "+sampleArgs(args)
			if isRedisOption(opt) {
				redis, line = "redis {\n"+redisBase(opt)+"\n"+line+"\n}", ""
			}
			if opt == "regions" {
				line = "regions {\nus-west 37.64 -120.88\nseoul 37.57 126.98\n}"
			}
			keys := "api_key k\napi_secret " + strings.Repeat("s", 32)
			if opt == "api_key" || opt == "api_secret" {
				keys = ""
			}
			cf := ":8080 {\n" + directive + " {\n" + redis + "\n" + keys + "\n" + line + "\n}\n}\n"
			cf = string(caddyfile.Format([]byte(cf)))
			if _, err := adapt(t, cf); err != nil {
				t.Errorf("%s %s %s: %v\n%s", directive, opt, args, err, cf)
			}
		}
	}
}

func isRedisOption(opt string) bool {
	return slices.Contains([]string{"address", "username", "password", "db", "use_tls", "sentinel_master_name",
		"sentinel_username", "sentinel_password", "sentinel_addresses", "cluster_addresses"}, opt)
}

// redisBase is the rest of a redis block that makes opt valid.
func redisBase(opt string) string {
	switch {
	case opt == "cluster_addresses":
		return ""
	case strings.HasPrefix(opt, "sentinel_"):
		return "sentinel_master_name m\nsentinel_addresses 127.0.0.1:26379"
	case opt == "address":
		return ""
	}
	return "address 127.0.0.1:6379"
}

var placeholder = regexp.MustCompile(`<[^>]+>`)

// sampleArgs turns the arguments a syntax line shows into real ones: the
// first of alternatives, a sample for each <placeholder>.
func sampleArgs(shown string) string {
	samples := map[string]string{
		"<duration>": "2s", "<port>": "7880", "<number>": "3", "<host:port>": "10.0.0.9:7880",
		"<host:port...>": "127.0.0.1:6379", "<advertised_ip>": "203.0.113.9", "<cidr...|private>": "private",
		"<key>": strings.Repeat("k", 32), "<secret>": strings.Repeat("s", 32), "<header>": "Remote-User",
		"<name>": "n", "<load>": "0.9", "<username>": "u", "<password>": "p", "wss://<host>": "wss://livekit.example.com",
	}
	var out []string
	for _, a := range strings.Fields(strings.Trim(shown, "[]")) {
		a = strings.Trim(a, "[]")
		if s, ok := samples[a]; ok {
			out = append(out, s)
			continue
		}
		first, _, _ := strings.Cut(a, "|")
		if s, ok := samples[first]; ok {
			first = s
		}
		out = append(out, placeholder.ReplaceAllString(first, "x"))
	}
	return strings.Join(out, " ")
}

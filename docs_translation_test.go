package caddylivekit

import (
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The Chinese translations (X.zh-CN.md beside X.md) must keep up with the
// English files: every line of the English code blocks, every inline code
// span (option names, file names, commands, output), every `caddy livekit
// <verb>` and `./deploy.sh <verb>`, every link to another file and the
// headings' outline must be in the Chinese file too. Whoever changes an
// English file sees here what the Chinese one lacks.
func TestDocsTranslation(t *testing.T) {
	pairs := translationPairs(t)
	if len(pairs) == 0 {
		t.Fatal("no *.zh-CN.md file found")
	}
	verbs := commandVerbs(t)
	for _, p := range pairs {
		en, zh := readMarkdown(t, p[0]), readMarkdown(t, p[1])
		t.Run(p[0], func(t *testing.T) {
			checkCrossLinks(t, en, zh)
			checkFirstBlock(t, en, zh)
			checkCodeLines(t, en, zh)
			checkInlineCode(t, en, zh)
			checkVerbs(t, en, zh, verbs)
			checkFileLinks(t, en, zh)
			checkHeadings(t, en, zh)
		})
	}
}

// Every relative link of every Markdown file resolves: the file exists and
// an #anchor is a heading of the file it points to (GitHub's anchors).
func TestDocsLinks(t *testing.T) {
	docs := map[string]*markdown{}
	for _, f := range markdownFiles(t) {
		docs[f] = readMarkdown(t, f)
	}
	for _, f := range slices.Sorted(func(yield func(string) bool) {
		for f := range docs {
			if !yield(f) {
				return
			}
		}
	}) {
		d := docs[f]
		for _, l := range d.links {
			target, anchor, _ := strings.Cut(l.text, "#")
			if isExternal(target) {
				continue
			}
			p := f
			if target != "" {
				dec, err := url.PathUnescape(target)
				if err != nil {
					t.Errorf("%s:%d: link %q: %v", f, l.line, l.text, err)
					continue
				}
				p = path.Clean(path.Join(path.Dir(f), dec))
				if strings.HasPrefix(p, "../") || p == ".." {
					t.Errorf("%s:%d: link %q leaves the repository", f, l.line, l.text)
					continue
				}
				if _, err := os.Stat(filepath.FromSlash(p)); err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", f, l.line, l.text, p)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(p, ".md") {
				continue // line anchors of source files are GitHub's own
			}
			td := docs[p]
			if td == nil {
				td = readMarkdown(t, p)
			}
			a, err := url.PathUnescape(anchor)
			if err != nil {
				a = anchor
			}
			if !slices.Contains(td.anchors(), strings.ToLower(a)) {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s (its anchors: %s)",
					f, l.line, l.text, p, a, strings.Join(td.anchors(), " "))
			}
		}
	}
}

// The slugs GitHub gives headings, including Chinese ones.
func TestDocsHeadingAnchors(t *testing.T) {
	for heading, want := range map[string]string{
		"Several machines":                                    "several-machines",
		"A single node on one machine (try-out)":              "a-single-node-on-one-machine-try-out",
		"Routing decision and create-room (`go test -bench`)": "routing-decision-and-create-room-go-test--bench",
		"常见问题（FAQ）":                                           "常见问题faq",
		"如何从一个节点扩到三个？":                                        "如何从一个节点扩到三个",
		"Redis 的密码、持久化（AOF）、内存上限":                             "redis-的密码持久化aof内存上限",
		"`caddy livekit status` 怎么看":                          "caddy-livekit-status-怎么看",
		"room_node_map":                                       "room_node_map",
		"[Link](x.md) text":                                   "link-text",
	} {
		if got := githubSlug(heading); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// markdown is what the checks read of one Markdown file.
type markdown struct {
	path     string
	text     string
	code     []lineAt // non-blank lines inside fenced code blocks, trimmed
	inline   []lineAt // inline code spans outside them, whitespace collapsed
	links    []lineAt // link targets outside code
	headings []heading
	prose    string // the text outside code blocks, code spans blanked
}

type lineAt struct {
	text  string
	line  int
	block int // code lines: which fenced block, from 0
}

type heading struct {
	level int
	text  string
	line  int
}

var (
	fenceRE   = regexp.MustCompile("^ *(```+|~~~+)")
	headingRE = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	linkRE    = regexp.MustCompile(`!?\[([^\]]*)\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)`)
	spaceRE   = regexp.MustCompile(`\s+`)
)

func readMarkdown(t *testing.T, file string) *markdown {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		t.Fatal(err)
	}
	d := &markdown{path: file, text: string(b)}
	lines := strings.Split(strings.ReplaceAll(d.text, "\r\n", "\n"), "\n")
	var fence string // the open fence, "" outside a code block
	block := -1
	var prose []string
	for i, l := range lines {
		if m := fenceRE.FindStringSubmatch(l); m != nil {
			switch {
			case fence == "":
				fence = m[1]
				block++
				prose = append(prose, "")
				continue
			case m[1][0] == fence[0] && len(m[1]) >= len(fence) && strings.TrimSpace(l[len(m[0]):]) == "":
				fence = ""
				prose = append(prose, "")
				continue
			}
		}
		if fence != "" {
			if s := strings.TrimSpace(l); s != "" {
				d.code = append(d.code, lineAt{s, i + 1, block})
			}
			prose = append(prose, "")
			continue
		}
		if m := headingRE.FindStringSubmatch(l); m != nil {
			d.headings = append(d.headings, heading{len(m[1]), m[2], i + 1})
		}
		prose = append(prose, l)
	}
	// Inline code spans may run over a line break: read the prose as one text.
	text := strings.Join(prose, "\n")
	lineOf := func(off int) int { return strings.Count(text[:off], "\n") + 1 }
	blanked := []byte(text)
	for i := 0; i < len(text); {
		if text[i] == '\\' {
			i += 2
			continue
		}
		if text[i] != '`' {
			i++
			continue
		}
		n := 1
		for i+n < len(text) && text[i+n] == '`' {
			n++
		}
		run := text[i : i+n]
		end := -1
		for j := i + n; j < len(text); {
			k := strings.Index(text[j:], run)
			if k < 0 {
				break
			}
			k += j
			if (k+n == len(text) || text[k+n] != '`') && text[k-1] != '`' {
				end = k
				break
			}
			j = k + 1
		}
		if end < 0 {
			i += n
			continue
		}
		span := spaceRE.ReplaceAllString(text[i+n:end], " ")
		if len(span) > 2 && span[0] == ' ' && span[len(span)-1] == ' ' {
			span = span[1 : len(span)-1]
		}
		if strings.TrimSpace(span) != "" {
			d.inline = append(d.inline, lineAt{span, lineOf(i), 0})
		}
		for j := i; j < end+n; j++ {
			if blanked[j] != '\n' {
				blanked[j] = ' '
			}
		}
		i = end + n
	}
	d.prose = string(blanked)
	for _, m := range linkRE.FindAllStringSubmatchIndex(d.prose, -1) {
		d.links = append(d.links, lineAt{d.prose[m[4]:m[5]], lineOf(m[0]), 0})
	}
	return d
}

// anchors are the GitHub anchors of d's headings, duplicates numbered as
// GitHub numbers them (-1, -2, ...).
func (d *markdown) anchors() []string {
	var out []string
	seen := map[string]int{}
	for _, h := range d.headings {
		s := githubSlug(h.text)
		if n, ok := seen[s]; ok {
			seen[s] = n + 1
			s += "-" + strconv.Itoa(n+1)
		} else {
			seen[s] = 0
		}
		out = append(out, s)
	}
	return out
}

var headingLinkRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// githubSlug is GitHub's anchor for a heading: the text as rendered
// (markup and link targets gone), lower-cased, with every character that is
// not a letter, a mark, a digit, a connector (_), '-' or ' ' removed, and
// spaces turned into '-'. Chinese characters are letters: they stay.
func githubSlug(h string) string {
	h = headingLinkRE.ReplaceAllString(h, "$1")
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-', unicode.IsLetter(r), unicode.Is(unicode.M, r), unicode.Is(unicode.Nd, r),
			unicode.Is(unicode.Nl, r), unicode.Is(unicode.Pc, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isExternal(target string) bool {
	if strings.HasPrefix(target, "//") {
		return true
	}
	u, err := url.Parse(target)
	return err == nil && u.Scheme != ""
}

// markdownFiles lists the repository's Markdown files (hidden folders and
// test data left out), with slash-separated paths.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != "." && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata" || e.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".md") {
			out = append(out, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// translationPairs: [English, Chinese] for every X.zh-CN.md, whose English
// file X.md must exist.
func translationPairs(t *testing.T) [][2]string {
	t.Helper()
	var out [][2]string
	for _, f := range markdownFiles(t) {
		if base, ok := strings.CutSuffix(f, ".zh-CN.md"); ok {
			en := base + ".md"
			if _, err := os.Stat(filepath.FromSlash(en)); err != nil {
				t.Errorf("%s has no English original %s", f, en)
				continue
			}
			out = append(out, [2]string{en, f})
		}
	}
	return out
}

func zhName(en string) string { return strings.TrimSuffix(en, ".md") + ".zh-CN.md" }

// Each file names its counterpart at the very top.
func checkCrossLinks(t *testing.T, en, zh *markdown) {
	t.Helper()
	for _, c := range []struct{ from, to *markdown }{{en, zh}, {zh, en}} {
		first, _, _ := strings.Cut(strings.TrimLeft(c.from.text, "\n"), "\n")
		want := path.Base(c.to.path)
		ok := false
		for _, m := range linkRE.FindAllStringSubmatch(first, -1) {
			ok = ok || m[2] == want
		}
		if !ok {
			t.Errorf("%s: its first line must link to %s (e.g. \"English | [简体中文](%s)\"), got %q",
				c.from.path, want, path.Base(zh.path), first)
		}
	}
}

// The Chinese file opens with the English file's first code block (the
// README's two commands that set up a fresh machine).
func checkFirstBlock(t *testing.T, en, zh *markdown) {
	t.Helper()
	first := func(d *markdown) (out []string) {
		for _, l := range d.code {
			if l.block == 0 {
				out = append(out, l.text)
			}
		}
		return out
	}
	if e, z := first(en), first(zh); !slices.Equal(e, z) {
		t.Errorf("the first code block of %s must be the first of %s, line for line:\n\t%s\nit is:\n\t%s",
			en.path, zh.path, strings.Join(e, "\n\t"), strings.Join(z, "\n\t"))
	}
}

// Every non-blank line of the English code blocks is a line of a Chinese
// code block, as many times.
func checkCodeLines(t *testing.T, en, zh *markdown) {
	t.Helper()
	have := map[string]int{}
	for _, l := range zh.code {
		have[l.text]++
	}
	for _, l := range en.code {
		if have[l.text] == 0 {
			t.Errorf("%s lacks the code-block line %s:%d:\n\t%s", zh.path, en.path, l.line, l.text)
			continue
		}
		have[l.text]--
	}
}

// Every inline code span of the English file (option names, file names,
// commands, output) appears in the Chinese one.
func checkInlineCode(t *testing.T, en, zh *markdown) {
	t.Helper()
	all := spaceRE.ReplaceAllString(zh.text, " ")
	seen := map[string]bool{}
	for _, s := range en.inline {
		if seen[s.text] {
			continue
		}
		seen[s.text] = true
		if !strings.Contains(all, s.text) {
			t.Errorf("%s lacks the inline code `%s` of %s:%d", zh.path, s.text, en.path, s.line)
		}
	}
}

// commandVerbs reads the verbs of ./deploy.sh (its main's case arms) and of
// caddy livekit (the commands' Use in livekitcmd).
func commandVerbs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("deploy.sh")
	if err != nil {
		t.Fatal(err)
	}
	var deploy []string
	_, mainFn, _ := strings.Cut(string(b), "\nmain() {")
	for _, m := range regexp.MustCompile(`(?m)^\t([a-z][a-z |]*)\)`).FindAllStringSubmatch(mainFn, -1) {
		for _, v := range strings.Split(m[1], "|") {
			deploy = append(deploy, strings.TrimSpace(v))
		}
	}
	var lk []string
	files, _ := filepath.Glob("livekitcmd/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`Use:\s*"([a-z][a-z-]*)`).FindAllStringSubmatch(string(b), -1) {
			lk = append(lk, m[1])
		}
	}
	if len(deploy) < 5 || len(lk) < 5 {
		t.Fatalf("could not read the verbs: deploy.sh %v, caddy livekit %v", deploy, lk)
	}
	return map[string][]string{`(?:\./)?deploy\.sh`: deploy, `caddy livekit`: lk}
}

// Every `caddy livekit <verb>` and `./deploy.sh <verb>` of the English
// file is in the Chinese one.
func checkVerbs(t *testing.T, en, zh *markdown, verbs map[string][]string) {
	t.Helper()
	for cmd, vs := range verbs {
		re := regexp.MustCompile(`(?:^|[^\w./-])(` + cmd + ` (?:` + strings.Join(vs, "|") + `))\b`)
		seen := map[string]bool{}
		for i, l := range strings.Split(en.text, "\n") {
			for _, m := range re.FindAllStringSubmatch(l, -1) {
				if seen[m[1]] {
					continue
				}
				seen[m[1]] = true
				if !strings.Contains(zh.text, m[1]) {
					t.Errorf("%s lacks %q of %s:%d", zh.path, m[1], en.path, i+1)
				}
			}
		}
	}
}

// Every other file the English file links to, the Chinese file links to
// too (or to that file's Chinese counterpart).
func checkFileLinks(t *testing.T, en, zh *markdown) {
	t.Helper()
	targets := map[string]bool{}
	for _, l := range zh.links {
		p, _, _ := strings.Cut(l.text, "#")
		targets[p] = true
	}
	for _, l := range en.links {
		p, _, _ := strings.Cut(l.text, "#")
		if p == "" || isExternal(p) || p == path.Base(zh.path) {
			continue
		}
		if !targets[p] && !targets[zhName(p)] {
			t.Errorf("%s lacks a link to %s (or %s), linked at %s:%d", zh.path, p, zhName(p), en.path, l.line)
		}
	}
}

// The Chinese file has the English one's outline: as many headings, at the
// same levels, in the same order, so that an edit of one is easy to mirror.
func checkHeadings(t *testing.T, en, zh *markdown) {
	t.Helper()
	for i, h := range en.headings {
		if i >= len(zh.headings) {
			t.Errorf("%s lacks a counterpart of heading %d of %s:%d %q (level %d): it has %d headings",
				zh.path, i+1, en.path, h.line, h.text, h.level, len(zh.headings))
			return
		}
		if z := zh.headings[i]; z.level != h.level {
			t.Errorf("heading %d of %s:%d %q is level %d, of %s:%d %q level %d: the outlines differ from there",
				i+1, en.path, h.line, h.text, h.level, zh.path, z.line, z.text, z.level)
			return
		}
	}
	if len(zh.headings) > len(en.headings) {
		z := zh.headings[len(en.headings)]
		t.Errorf("%s:%d %q has no counterpart in %s (%d headings)", zh.path, z.line, z.text, en.path, len(en.headings))
	}
}

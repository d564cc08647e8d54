package yamlfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/resource"
	"github.com/sluice-gw/sluice/internal/schema"
)

// Sections are the top-level list keys of apisix.yaml that hold resources,
// in the order APISIX documents them. "plugins" is handled separately.
var Sections = []string{
	"routes", "services", "upstreams", "consumers", "consumer_groups", "ssls",
	"global_rules", "plugin_configs", "plugin_metadata", "protos", "secrets",
	"stream_routes",
}

// endMarker is APISIX's rule (apisix/core/config_yaml.lua): the last 10
// bytes of the file must contain "#END" followed only by white space. It
// protects against loading a file an editor or a deploy tool is still
// writing.
var endMarker = regexp.MustCompile(`#END\s*$`)

// decodeDepth bounds nesting of item values, as the Admin API does.
const decodeDepth = 1000

// Item is one resource of the file, as it is stored.
type Item struct {
	// Key is the store key in APISIX's layout, e.g. "/routes/1" or
	// "/consumers/jack/credentials/c1".
	Key string
	// Value is the resource as JSON, with its id set.
	Value []byte
	// Line is where the item starts in the file.
	Line int
}

// Config is the result of parsing an apisix.yaml: the valid items and what
// was skipped.
type Config struct {
	// Items holds the valid items in file order.
	Items []Item
	// Plugins is the file's `plugins:` list (names only), nil when the key
	// is absent.
	Plugins []string
	// Problems lists skipped items and ignored keys. None of them stops the
	// rest of the file from loading.
	Problems []*Problem
}

// Problem is one thing wrong in an apisix.yaml, located by file and line.
// Path names the item ("routes[2]") when there is one.
type Problem struct {
	File string
	Line int
	Path string
	Msg  string
}

// Error formats the problem as "file:line: path: msg", the form editors
// and terminals turn into links.
func (p *Problem) Error() string {
	var b strings.Builder
	switch {
	case p.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	case p.File != "":
		b.WriteString(p.File + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// HasEndMarker reports whether data ends with APISIX's "#END" marker.
func HasEndMarker(data []byte) bool {
	tail := data
	if len(tail) > 10 {
		tail = tail[len(tail)-10:]
	}
	return endMarker.Match(tail)
}

// LooksLikeApisixYAML guesses whether data is an apisix.yaml rather than a
// config.yaml: it has the end marker or one of the resource sections at the
// top level. `sluice validate` uses it to pick the checker.
func LooksLikeApisixYAML(data []byte) bool {
	if HasEndMarker(data) {
		return true
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimRight(string(line), " \t\r")
		for _, sec := range Sections {
			if s == sec+":" || strings.HasPrefix(s, sec+": ") {
				return true
			}
		}
	}
	return false
}

// Parse reads apisix.yaml content. It fails as a whole (with a *Problem or
// a config error, both carrying file:line) when the end marker is missing,
// the YAML does not parse, an environment reference cannot be resolved or
// the top level is not a mapping; then nothing of the file should be used.
// Otherwise every item is validated on its own: invalid ones are left out
// and reported in Config.Problems.
//
// chk validates items with the plugin registry (unknown plugins and plugin
// schema errors reject the item, as in APISIX's standalone mode); with a nil
// chk only the checks that need no registry run (resource.Decode).
func Parse(data []byte, file string, chk *resource.Checker) (cfg *Config, err error) {
	if !HasEndMarker(data) {
		return nil, &Problem{File: file, Line: bytes.Count(data, []byte("\n")) + 1,
			Msg: `missing the "#END" marker at the end of the file (it tells a complete file from one still being written)`}
	}
	var doc yaml.Node
	if err := unmarshal(data, &doc); err != nil {
		return nil, config.SyntaxError(err, file)
	}
	cfg = &Config{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil // only comments and the marker: an empty config
	}
	root := resolve(doc.Content[0])
	if err := config.SubstituteEnv(root, file); err != nil {
		return nil, err
	}
	if isNull(root) {
		return cfg, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Problem{File: file, Line: root.Line, Msg: "the top level must be a mapping of sections (routes:, upstreams:, ...)"}
	}
	p := &parser{file: file, chk: chk, cfg: cfg, seen: map[string]string{}}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		switch {
		case k.Value == "plugins":
			p.plugins(v)
		case isSection(k.Value):
			p.section(k.Value, v)
		default:
			p.problem(k.Line, k.Value, "unknown top-level key; it is ignored")
		}
	}
	return cfg, nil
}

// unmarshal turns a panic inside the YAML library on hostile input into an
// error, so a bad file can never take the gateway down.
func unmarshal(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return yaml.Unmarshal(data, doc)
}

func isSection(s string) bool {
	for _, sec := range Sections {
		if s == sec {
			return true
		}
	}
	return false
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

type parser struct {
	file string
	chk  *resource.Checker
	cfg  *Config
	// seen maps a store key to the path of the item that took it.
	seen map[string]string
}

func (p *parser) problem(line int, path, format string, args ...any) {
	p.cfg.Problems = append(p.cfg.Problems, &Problem{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// plugins reads the `plugins:` list: items are {name: x} (optionally
// stream: true) as in APISIX, or plain names.
func (p *parser) plugins(v *yaml.Node) {
	p.cfg.Plugins = []string{}
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		p.problem(v.Line, "plugins", "must be a list of {name: <plugin>} items")
		return
	}
	for i, n := range v.Content {
		n = resolve(n)
		path := fmt.Sprintf("plugins[%d]", i)
		var name string
		switch n.Kind {
		case yaml.ScalarNode:
			name = n.Value
		case yaml.MappingNode:
			var m struct {
				Name   string `yaml:"name"`
				Stream bool   `yaml:"stream"`
			}
			if err := n.Decode(&m); err != nil {
				p.problem(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
				continue
			}
			if m.Stream {
				continue // stream plugins are not part of the HTTP set
			}
			name = m.Name
		}
		if name == "" {
			p.problem(n.Line, path, "missing plugin name")
			continue
		}
		p.cfg.Plugins = append(p.cfg.Plugins, name)
	}
}

func (p *parser) section(name string, v *yaml.Node) {
	if isNull(v) {
		return
	}
	if v.Kind != yaml.SequenceNode {
		p.problem(v.Line, name, "must be a list of objects; the section is ignored")
		return
	}
	for i, n := range v.Content {
		p.item(name, i, resolve(n))
	}
}

// item validates one element of a section and, when it is valid, adds it.
func (p *parser) item(section string, i int, n *yaml.Node) {
	path := fmt.Sprintf("%s[%d]", section, i)
	if n.Kind != yaml.MappingNode {
		p.problem(n.Line, path, "must be an object")
		return
	}
	var raw any
	if err := n.Decode(&raw); err != nil {
		p.problem(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	obj, ok := normalize(raw, 0).(map[string]any)
	if !ok {
		p.problem(n.Line, path, "must be an object")
		return
	}
	// modifiedIndex is APISIX bookkeeping, not part of the resource.
	delete(obj, "modifiedIndex")
	// `key-auth:` with nothing after it is an empty conf in APISIX (its
	// YAML reader gives an empty table), not null.
	if ps, ok := obj["plugins"].(map[string]any); ok {
		for k, v := range ps {
			if v == nil {
				ps[k] = map[string]any{}
			}
		}
	}

	kindName := section
	var key string
	switch section {
	case "consumers":
		id := resource.IDString(obj["id"])
		if user, cid, isCred := strings.Cut(id, "/credentials/"); isCred {
			if !safeID(user) || !safeID(cid) {
				p.problem(n.Line, path, "invalid credential id %q: want <username>/credentials/<id> with letters, digits, '-', '_' or '.'", id)
				return
			}
			kindName = "credentials"
			key = "/consumers/" + user + "/credentials/" + cid
			obj["id"] = cid
			break
		}
		user, _ := obj["username"].(string)
		if user == "" {
			p.problem(n.Line, path, `a consumer needs a "username" (or an "id" of the form <username>/credentials/<id> for a credential)`)
			return
		}
		if !safeID(user) {
			p.problem(n.Line, path, "invalid username %q", user)
			return
		}
		key = "/consumers/" + user
	case "plugin_metadata":
		id := resource.IDString(obj["id"])
		if id == "" {
			p.problem(n.Line, path, `plugin_metadata needs an "id": the plugin name`)
			return
		}
		if !safeID(id) {
			p.problem(n.Line, path, "invalid plugin name %q", id)
			return
		}
		obj["id"] = id
		key = "/plugin_metadata/" + id
	case "secrets":
		id := resource.IDString(obj["id"])
		manager, sid, ok := strings.Cut(id, "/")
		if !ok || !safeID(manager) || !safeID(sid) {
			p.problem(n.Line, path, `a secret needs an "id" of the form <manager>/<id>, e.g. vault/1`)
			return
		}
		key = "/secrets/" + id
	default:
		id := resource.IDString(obj["id"])
		if id == "" {
			// APISIX names items without an id by their 1-based position.
			id = "arr_" + strconv.Itoa(i+1)
		}
		if !safeID(id) {
			p.problem(n.Line, path, "invalid id %q: use letters, digits, '-', '_' or '.'", id)
			return
		}
		obj["id"] = id
		key = "/" + section + "/" + id
	}
	if prev, dup := p.seen[key]; dup {
		p.problem(n.Line, path, "duplicate of %s (same key %s); the first one is used", prev, key)
		return
	}

	kind, ok := resource.ByName(kindName)
	if !ok {
		p.problem(n.Line, path, "unknown resource kind %s", kindName)
		return
	}
	b, err := json.Marshal(obj)
	if err != nil {
		p.problem(n.Line, path, "cannot be represented as JSON: %v", err)
		return
	}
	if err := p.check(kind, b); err != nil {
		p.problem(n.Line, path, "%s", err.Error())
		return
	}
	p.seen[key] = path
	p.cfg.Items = append(p.cfg.Items, Item{Key: key, Value: b, Line: n.Line})
}

// check validates with the same code the Admin API (Checker) or the
// snapshot builder (Decode) uses, on the same JSON representation.
func (p *parser) check(kind *resource.Kind, b []byte) error {
	if p.chk == nil {
		_, err := resource.Decode(kind, b)
		return err
	}
	v, err := schema.DecodeJSON(b, decodeDepth)
	if err != nil {
		return err
	}
	obj, _ := v.(map[string]any)
	return p.chk.Check(kind, obj)
}

// normalize turns what yaml.v3 decodes into JSON-compatible values: maps
// with non-string keys (e.g. `200: ...`) get their keys as text.
func normalize(v any, depth int) any {
	if depth > decodeDepth {
		return nil
	}
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x, depth+1)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x, depth+1)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = normalize(x, depth+1)
		}
		return t
	}
	return v
}

// safeID reports whether s can be one segment of a store key.
func safeID(s string) bool {
	if s == "" || len(s) > 256 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

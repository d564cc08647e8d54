// Package trafficsplit implements APISIX's traffic-split plugin: in the
// access phase it picks, per request, which upstream serves a route. Rules
// are tried in order; the first matching rule's weighted upstreams are
// chosen by lua-resty-balancer's weighted round robin.
package trafficsplit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/sluice-gw/sluice/internal/expr"
	"github.com/sluice-gw/sluice/internal/plugin"
	"github.com/sluice-gw/sluice/internal/resource"
)

// Name is the plugin name.
const Name = "traffic-split"

// Priority is APISIX's priority for traffic-split.
const Priority = 966

// maxWeight caps weights at 2^53, the largest integer a Lua number (a
// double) holds exactly; it also keeps the round-robin cycle length inside
// a uint64.
const maxWeight = 1 << 53

// inlineFields are the upstream fields traffic-split copies from an inline
// upstream when it builds the upstream for a request (set_upstream in
// traffic-split.lua); everything else (checks, retries, tls, ...) is
// ignored there, so it is ignored here.
var inlineFields = []string{"name", "type", "hash_on", "pass_host", "upstream_host", "key", "nodes", "timeout", "scheme"}

// Def returns the plugin's definition.
func Def() *plugin.Def {
	return &plugin.Def{Name: Name, Priority: Priority, Schema: buildSchema(), New: New}
}

// buildSchema transcribes traffic-split.lua's schema; the inline upstream
// and upstream_id use the shared upstream and id definitions of the
// resource package (schema_def.upstream, schema_def.id_schema).
func buildSchema() json.RawMessage {
	k, _ := resource.ByName("upstreams")
	up := k.Schema()
	var parsed struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(up, &parsed)
	id := parsed.Properties["id"]
	return json.RawMessage(`{"type":"object","properties":{"rules":{"type":"array","items":{"type":"object","properties":{
"match":{"type":"array","items":{"type":"object","properties":{"vars":{"type":"array"}}}},
"weighted_upstreams":{"type":"array","items":{"type":"object","properties":{
 "upstream_id":` + string(id) + `,
 "upstream":` + string(up) + `,
 "weight":{"description":"used to split traffic between differentupstreams for plugin configuration","type":"integer","default":1,"minimum":0}}},
 "default":[{"weight":1}],"minItems":1,"maxItems":20}}}}}}`)
}

// Config is traffic-split's configuration.
type Config struct {
	// Rules are tried in order; the first that matches picks the upstream.
	Rules []Rule `json:"rules"`
}

// Rule is one traffic-split rule.
type Rule struct {
	// Match items are OR'ed; the conditions inside one item's vars are
	// AND'ed. No match at all means the rule always matches.
	Match []struct {
		Vars json.RawMessage `json:"vars"`
	} `json:"match"`
	// WeightedUpstreams are the candidates; nil means [{"weight":1}], the
	// route's own upstream.
	WeightedUpstreams []WeightedUpstream `json:"weighted_upstreams"`
}

// WeightedUpstream is one candidate of a rule: an upstream id, an inline
// upstream, or neither (the route's own upstream).
type WeightedUpstream struct {
	UpstreamID any             `json:"upstream_id"`
	Upstream   json.RawMessage `json:"upstream"`
	Weight     *json.Number    `json:"weight"`
}

// choiceKind tells what a candidate stands for.
type choiceKind uint8

const (
	routeUpstream choiceKind = iota
	byID
	inline
)

// choice is one distinct candidate of a rule.
type choice struct {
	kind   choiceKind
	id     any // the upstream id as a string, boxed once so picks do not allocate
	up     *resource.Upstream
	err    string // inline upstream the gateway cannot build: answered 500
	weight int64
}

// rule is a compiled rule.
type rule struct {
	hasMatch bool
	match    []*expr.Expr
	choices  []choice
	rr       *roundRobin
}

// Plugin is a built traffic-split instance.
type Plugin struct {
	rules []*rule
}

// New decodes conf and runs check_schema's vars validation; inline
// upstreams are decoded once here so the gateway sees the same
// *resource.Upstream on every request and can cache its runtime.
func New(conf json.RawMessage, _ *plugin.BuildEnv) (any, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(conf))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("invalid conf: %w", err)
	}
	p := &Plugin{}
	for _, rc := range c.Rules {
		ru := &rule{hasMatch: rc.Match != nil}
		for _, m := range rc.Match {
			e, err := expr.Compile(m.Vars)
			if err != nil {
				return nil, fmt.Errorf("failed to validate the 'vars' expression: %w", err)
			}
			ru.match = append(ru.match, e)
		}
		wus := rc.WeightedUpstreams
		if len(wus) == 0 {
			// The schema rejects [] and fills in the default for nil.
			wus = []WeightedUpstream{{}}
		}
		byKey := map[string]int{}
		for i, wu := range wus {
			w := int64(1)
			if wu.Weight != nil {
				n, err := wu.Weight.Int64()
				if err != nil || n < 0 {
					return nil, fmt.Errorf("invalid weight %s", wu.Weight.String())
				}
				w = min(n, maxWeight)
			}
			// The Lua code keys its server list by upstream id, by the
			// inline upstream table, or by one marker for "the route's
			// upstream": a repeated id or marker keeps one slot whose
			// weight is the last one given.
			var ch choice
			key := ""
			switch {
			case wu.UpstreamID != nil:
				id := resource.IDString(wu.UpstreamID)
				ch = choice{kind: byID, id: id}
				key = "id:" + id
			case len(wu.Upstream) > 0 && !bytes.Equal(wu.Upstream, []byte("null")):
				ch = buildInline(wu.Upstream)
				key = fmt.Sprintf("inline:%d", i)
			default:
				ch = choice{kind: routeUpstream}
				key = "route"
			}
			ch.weight = w
			if j, ok := byKey[key]; ok {
				ru.choices[j].weight = w
				continue
			}
			byKey[key] = len(ru.choices)
			ru.choices = append(ru.choices, ch)
		}
		weights := make([]int64, len(ru.choices))
		for i, ch := range ru.choices {
			weights[i] = ch.weight
		}
		ru.rr = newRoundRobin(weights)
		p.rules = append(p.rules, ru)
	}
	return p, nil
}

// buildInline decodes an inline upstream the way set_upstream does: only
// the copied fields, checked with the upstream schema and checks. A failure
// is kept and answered with 500 at request time, as APISIX does.
func buildInline(raw json.RawMessage) choice {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return choice{kind: inline, err: err.Error()}
	}
	filtered := make(map[string]any, len(inlineFields))
	for _, f := range inlineFields {
		if v, ok := m[f]; ok {
			filtered[f] = v
		}
	}
	body, err := json.Marshal(filtered)
	if err != nil {
		return choice{kind: inline, err: err.Error()}
	}
	k, _ := resource.ByName("upstreams")
	v, err := resource.Decode(k, body)
	if err != nil {
		return choice{kind: inline, err: err.Error()}
	}
	up, ok := v.(*resource.Upstream)
	if !ok {
		return choice{kind: inline, err: "unexpected upstream type"}
	}
	return choice{kind: inline, up: up}
}

// Access picks the upstream for this request: the first matching rule's
// weighted round robin; no matching rule leaves the route's upstream.
func (p *Plugin) Access(r *plugin.Request) {
	// match_passed carries over between rules in the Lua code: a rule
	// with an empty match list inherits the previous rule's result.
	passed := true
	var chosen *rule
	for _, ru := range p.rules {
		if !ru.hasMatch {
			passed = true
			chosen = ru
			break
		}
		for _, e := range ru.match {
			passed = e.Eval(r.Ctx)
			if passed {
				break
			}
		}
		if passed {
			chosen = ru
			break
		}
	}
	if !passed || chosen == nil {
		return
	}
	ch := &chosen.choices[chosen.rr.next()]
	switch ch.kind {
	case byID:
		r.Upstream = ch.id
	case inline:
		if ch.up == nil {
			r.Exit(500, ch.err)
			return
		}
		r.Upstream = ch.up
	default:
		r.Upstream = nil
	}
}

// roundRobin reproduces lua-resty-balancer's roundrobin.find order
// (interleaved weighted round robin: a current weight cw starts at the
// largest weight and drops by the gcd after each pass; a pass picks, in
// order, every entry whose weight is >= cw) without a lock: the sequence
// is periodic, so an atomic counter indexes into it. Runs of passes that
// pick the same entries are kept as segments, so the cost does not grow
// with the weights.
type roundRobin struct {
	n     atomic.Uint64
	cycle uint64
	segs  []segment
}

// segment is a run of identical passes.
type segment struct {
	size    uint64 // passes * len(members)
	members []int
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// newRoundRobin builds the pick sequence for weights (one per distinct
// candidate, in configuration order). Like the Lua code: a single
// candidate is always picked, whatever its weight; all-zero weights are
// picked in turn; otherwise zero weights are never picked.
func newRoundRobin(weights []int64) *roundRobin {
	rr := &roundRobin{}
	if len(weights) <= 1 {
		rr.cycle = 1
		rr.segs = []segment{{size: 1, members: []int{0}}}
		return rr
	}
	var g, maxW int64
	g = weights[0]
	maxW = weights[0]
	for _, w := range weights[1:] {
		g = gcd(g, w)
		maxW = max(maxW, w)
	}
	if maxW == 0 {
		all := make([]int, len(weights))
		for i := range all {
			all[i] = i
		}
		rr.cycle = uint64(len(all))
		rr.segs = []segment{{size: rr.cycle, members: all}}
		return rr
	}
	// Distinct weights in units of g, descending.
	var levels []int64
	for _, w := range weights {
		u := w / g
		if u == 0 {
			continue
		}
		dup := false
		for _, l := range levels {
			if l == u {
				dup = true
				break
			}
		}
		if !dup {
			levels = append(levels, u)
		}
	}
	for i := 1; i < len(levels); i++ {
		for j := i; j > 0 && levels[j] > levels[j-1]; j-- {
			levels[j], levels[j-1] = levels[j-1], levels[j]
		}
	}
	for i, l := range levels {
		next := int64(0)
		if i+1 < len(levels) {
			next = levels[i+1]
		}
		var members []int
		for idx, w := range weights {
			if w/g >= l {
				members = append(members, idx)
			}
		}
		passes := uint64(l - next)
		s := segment{size: passes * uint64(len(members)), members: members}
		rr.segs = append(rr.segs, s)
		rr.cycle += s.size
	}
	return rr
}

// next returns the index of the candidate to use for this request.
func (rr *roundRobin) next() int {
	if len(rr.segs) == 1 && len(rr.segs[0].members) == 1 {
		return rr.segs[0].members[0]
	}
	p := (rr.n.Add(1) - 1) % rr.cycle
	for i := range rr.segs {
		s := &rr.segs[i]
		if p < s.size {
			return s.members[p%uint64(len(s.members))]
		}
		p -= s.size
	}
	return rr.segs[0].members[0]
}

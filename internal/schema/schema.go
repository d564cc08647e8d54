// Package schema compiles JSON Schema documents and validates decoded JSON
// against them, reporting failures in the exact wording of
// lua-resty-jsonschema (api7/jsonschema), the validator Apache APISIX uses.
// The Admin API conformance suite compares error_msg strings, so the words,
// the quoting and the choice of which error to report all follow the Lua
// library; the validation itself is done by santhosh-tekuri/jsonschema.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL is the name every compiled document is registered under; each
// Schema has its own compiler, so one name is enough.
const schemaURL = "sluice:///schema.json"

// Schema is a compiled JSON Schema document. It is safe for concurrent use.
type Schema struct {
	sch *jsonschema.Schema
	// doc is the decoded document (numbers as json.Number); error messages
	// need keyword values the library does not carry (anyOf required lists,
	// the declared type list).
	doc any
	// order maps the JSON pointer of a schema to the names of its
	// "properties" in document order. The Lua library reports the first
	// failing property; we approximate its order with the document order.
	order map[string][]string
}

// Compile compiles a JSON Schema document (draft-07, like APISIX's schemas).
func Compile(doc []byte) (*Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	order := map[string][]string{}
	if err := propertyOrder(json.NewDecoder(bytes.NewReader(doc)), "", order); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	for _, f := range formats() {
		c.RegisterFormat(f)
	}
	if err := c.AddResource(schemaURL, v); err != nil {
		return nil, fmt.Errorf("add schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("compile schema: %w", err)
	}
	return &Schema{sch: sch, doc: v, order: order}, nil
}

// MustCompile is Compile for documents built into the binary; it panics on
// error because such an error is a programming mistake.
func MustCompile(doc []byte) *Schema {
	s, err := Compile(doc)
	if err != nil {
		panic(err)
	}
	return s
}

// Validate checks v (as produced by DecodeJSON: maps, slices, json.Number,
// strings, bools, nil) against the schema. The error text is what
// lua-resty-jsonschema would return, without any prefix. Like APISIX, a
// secret reference ("$secret://...", "$env://...") passes any schema whose
// type is absent or "string".
func (s *Schema) Validate(v any) error {
	err := s.sch.Validate(v)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	msg := s.translate(verr, v)
	if msg == "" {
		// Every failure came from a secret reference, which APISIX's
		// skip_validation hook accepts as is.
		return nil
	}
	return errors.New(msg)
}

// propertyOrder walks a JSON document token by token and records, for every
// object that has a "properties" member, the member names of that
// "properties" object in document order, keyed by the JSON pointer of the
// object holding it.
func propertyOrder(dec *json.Decoder, ptr string, out map[string][]string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	return walkValue(dec, tok, ptr, out, false)
}

func walkValue(dec *json.Decoder, tok json.Token, ptr string, out map[string][]string, isProps bool) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		var names []string
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			if isProps {
				names = append(names, key)
			}
			vt, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walkValue(dec, vt, ptr+"/"+escapeToken(key), out, !isProps && key == "properties"); err != nil {
				return err
			}
		}
		if isProps {
			out[strings.TrimSuffix(ptr, "/properties")] = names
		}
	case '[':
		for i := 0; dec.More(); i++ {
			vt, err := dec.Token()
			if err != nil {
				return err
			}
			if err := walkValue(dec, vt, fmt.Sprintf("%s/%d", ptr, i), out, false); err != nil {
				return err
			}
		}
	}
	_, err := dec.Token() // closing delimiter
	if err == io.EOF {
		return nil
	}
	return err
}

func escapeToken(s string) string {
	s = strings.ReplaceAll(s, "~", "~0")
	return strings.ReplaceAll(s, "/", "~1")
}

// Lua's validator checks only these formats (with regexes, ipv4/ipv6 with
// inet_pton); every other format name is accepted unchecked, so we register
// no-op formats for the names the Go library would otherwise assert.
var (
	reEmail    = regexp.MustCompile(`^([A-Za-z0-9_\-\.])+\@([A-Za-z0-9_\-\.])+\.([A-Za-z]{2,4})$`)
	reHostname = regexp.MustCompile(`^[a-zA-Z0-9\-\.]+$`)
	reUUID     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reDate     = regexp.MustCompile(`^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$`)
	reDateTime = regexp.MustCompile(`^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$`)
	reURI      = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+\-.]*:[^\s]*$`)
)

func formats() []*jsonschema.Format {
	re := func(name string, r *regexp.Regexp) *jsonschema.Format {
		return &jsonschema.Format{Name: name, Validate: func(v any) error {
			if s, ok := v.(string); ok && !r.MatchString(s) {
				return errors.New("no match")
			}
			return nil
		}}
	}
	ip := func(name string, want4 bool) *jsonschema.Format {
		return &jsonschema.Format{Name: name, Validate: func(v any) error {
			s, ok := v.(string)
			if !ok {
				return nil
			}
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.Is4() != want4 {
				return errors.New("invalid address")
			}
			return nil
		}}
	}
	fs := []*jsonschema.Format{
		re("email", reEmail), re("hostname", reHostname), re("uuid", reUUID),
		re("date", reDate), re("date-time", reDateTime), re("uri", reURI),
		ip("ipv4", true), ip("ipv6", false),
	}
	for _, name := range []string{"json-pointer", "relative-json-pointer", "duration", "period",
		"time", "iri", "uri-reference", "iri-reference", "uri-template", "semver", "idn-email", "idn-hostname"} {
		fs = append(fs, &jsonschema.Format{Name: name, Validate: func(any) error { return nil }})
	}
	return fs
}

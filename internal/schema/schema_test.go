package schema

import (
	"encoding/json"
	"strings"
	"testing"
)

const idSchema = `{"anyOf":[{"type":"string","minLength":1,"maxLength":64,"pattern":"^[a-zA-Z0-9-_.]+$"},{"type":"integer","minimum":1}]}`

var testSchema = `{
  "type":"object",
  "properties":{
    "id": ` + idSchema + `,
    "name":{"type":"string","minLength":1,"maxLength":256},
    "uri":{"type":"string","minLength":1},
    "uris":{"type":"array","items":{"type":"string"},"minItems":1,"uniqueItems":true},
    "methods":{"type":"array","items":{"type":"string","enum":["GET","POST"]}},
    "host":{"type":"string","pattern":"^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$"},
    "labels":{"type":"object","patternProperties":{".*":{"type":"string","pattern":"^\\S+$"}}},
    "timeout":{"type":"object","properties":{"connect":{"type":"number","exclusiveMinimum":0},"send":{"type":"number","exclusiveMinimum":0},"read":{"type":"number","exclusiveMinimum":0}},"required":["connect","send","read"]},
    "retries":{"type":"integer","minimum":0},
    "max":{"type":"number","maximum":10,"exclusiveMaximum":100,"multipleOf":2},
    "checks":{"type":"object","properties":{"active":{"type":"object"},"passive":{"type":"object"}},"anyOf":[{"required":["active"]},{"required":["active","passive"]}]},
    "plugins":{"type":"object","maxProperties":1},
    "multi":{"type":["string","number"]},
    "tls":{"type":"object","properties":{"client_cert":{"type":"string"},"client_key":{"type":"string"},"client_cert_id":{"type":"string"}},
           "dependencies":{"client_cert":{"required":["client_key"]},"client_key":{"required":["client_cert"]},"client_cert_id":{"not":{"required":["client_cert","client_key"]}}}},
    "dep":{"type":"object","dependencies":{"a":["b"]}},
    "tuple":{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false},
    "ip":{"type":"string","format":"ipv4"},
    "c":{"const":"x"},
    "script":{"type":"string"},
    "cond":{"type":"object","if":{"properties":{"type":{"enum":["server"]}}},"then":{"required":["sni"]},"else":{"required":["key"]}}
  },
  "allOf":[{"oneOf":[{"required":["uri"]},{"required":["uris"]}]}],
  "not":{"required":["script","plugins"]},
  "additionalProperties":false
}`

func TestValidateMessages(t *testing.T) {
	s, err := Compile([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, want string
	}{
		{"ok", `{"uri":"/a"}`, ""},
		{"ok int id", `{"uri":"/a","id":12}`, ""},
		{"no uri", `{}`, "allOf 1 failed: value should match only one schema, but matches none"},
		{"both", `{"uri":"/a","uris":["/b"]}`, "allOf 1 failed: value should match only one schema, but matches both schemas 1 and 2"},
		{"root type", `[1]`, "wrong type: expected object, got table"},
		{"null type", `{"uri":null}`, `property "uri" validation failed: wrong type: expected string, got userdata`},
		{"id bad", `{"uri":"/a","id":"a b"}`, `property "id" validation failed: object matches none of the required`},
		{"id zero", `{"uri":"/a","id":0}`, `property "id" validation failed: object matches none of the required`},
		{"too long", `{"uri":"/a","name":"` + strings.Repeat("x", 257) + `"}`, `property "name" validation failed: string too long, expected at most 256, got 257`},
		{"too short", `{"uri":""}`, `property "uri" validation failed: string too short, expected at least 1, got 0`},
		{"uris type", `{"uris":"x"}`, `property "uris" validation failed: wrong type: expected array, got string`},
		{"uris min", `{"uris":[]}`, `property "uris" validation failed: expect array to have at least 1 items`},
		{"uris unique", `{"uris":["/a","/a"]}`, `property "uris" validation failed: expected unique items but items 1 and 2 are equal`},
		{"methods enum", `{"uri":"/a","methods":["GET","get"]}`, `property "methods" validation failed: failed to validate item 2: matches none of the enum values`},
		{"host pattern", `{"uri":"/a","host":"a b"}`, `property "host" validation failed: failed to match pattern "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$" with "a b"`},
		{"labels", `{"uri":"/a","labels":{"env":{}}}`, `property "labels" validation failed: failed to validate env (matching ".*"): wrong type: expected string, got table`},
		{"labels type", `{"uri":"/a","labels":"x"}`, `property "labels" validation failed: wrong type: expected object, got string`},
		{"timeout zero", `{"uri":"/a","timeout":{"connect":0,"send":1,"read":1}}`, `property "timeout" validation failed: property "connect" validation failed: expected 0 to be greater than 0`},
		{"timeout required", `{"uri":"/a","timeout":{"connect":1,"send":1}}`, `property "timeout" validation failed: property "read" is required`},
		{"retries", `{"uri":"/a","retries":-1}`, `property "retries" validation failed: expected -1 to be at least 0`},
		{"integer", `{"uri":"/a","retries":1.5}`, `property "retries" validation failed: wrong type: expected integer, got number`},
		{"integer float ok", `{"uri":"/a","retries":1.0}`, ""},
		{"max", `{"uri":"/a","max":12}`, `property "max" validation failed: expected 12 to be at most 10`},
		{"multiple", `{"uri":"/a","max":3}`, `property "max" validation failed: expected 3 to be a multiple of 2`},
		{"checks anyOf", `{"uri":"/a","checks":{"passive":{}}}`, `property "checks" validation failed: object matches none of the required: ["active"] or ["active","passive"]`},
		{"maxProperties", `{"uri":"/a","plugins":{"a":{},"b":{}}}`, `property "plugins" validation failed: expect object to have at most 1 properties`},
		{"additional", `{"uri":"/a","zzz":1,"aaa":2}`, `additional properties forbidden, found aaa`},
		{"multi type", `{"uri":"/a","multi":true}`, `property "multi" validation failed: wrong type: expected one of string, number, got boolean`},
		{"dependent schema", `{"uri":"/a","tls":{"client_cert_id":"1","client_cert":"a","client_key":"b"}}`, `property "tls" validation failed: failed to validate dependent schema for "client_cert_id": value wasn't supposed to match schema`},
		{"dependent required", `{"uri":"/a","tls":{"client_cert":"a"}}`, `property "tls" validation failed: failed to validate dependent schema for "client_cert": property "client_key" is required`},
		{"dependency array", `{"uri":"/a","dep":{"a":1}}`, `property "dep" validation failed: property "b" is required when "a" is set`},
		{"tuple", `{"uri":"/a","tuple":["a","b"]}`, `property "tuple" validation failed: failed to validate item 2: wrong type: expected integer, got string`},
		{"tuple extra", `{"uri":"/a","tuple":["a",1,2]}`, `property "tuple" validation failed: found unexpected extra items in array`},
		{"format", `{"uri":"/a","ip":"1.2.3"}`, `property "ip" validation failed: expect valid ipv4 format but got: 1.2.3`},
		{"const", `{"uri":"/a","c":"y"}`, `property "c" validation failed: failed to check const value`},
		{"not", `{"uri":"/a","script":"x","plugins":{}}`, `value wasn't supposed to match schema`},
		{"then", `{"uri":"/a","cond":{"type":"server"}}`, `property "cond" validation failed: then clause did not match`},
		{"else", `{"uri":"/a","cond":{"type":"client"}}`, `property "cond" validation failed: else clause did not match`},
		{"property before allOf", `{"uri":1}`, `property "uri" validation failed: wrong type: expected string, got number`},
		{"first property in order", `{"uri":"/a","name":"","retries":-1}`, `property "name" validation failed: string too short, expected at least 1, got 0`},
		{"pattern quoting", `{"uri":"/a","host":"a\"b\\c\nd"}`, "property \"host\" validation failed: failed to match pattern \"^\\\\*$|^\\\\*?[0-9a-zA-Z-._\\\\[\\\\]:]+$\" with \"a\\\"b\\\\c\\\nd\""},
		{"secret ref skips string schema", `{"uri":"/a","host":"$secret://vault/1/host","name":"$ENV://X"}`, ""},
		{"secret ref not for integer", `{"uri":"/a","retries":"$secret://vault/1/r"}`, `property "retries" validation failed: wrong type: expected integer, got string`},
		{"big int ok", `{"uri":"/a","id":123456789012345678901234567890}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := DecodeJSON([]byte(tt.body), 100)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Validate(v)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for _, doc := range []string{`{`, `{"type":5}`, `{"pattern":"("}`} {
		if _, err := Compile([]byte(doc)); err == nil {
			t.Errorf("Compile(%s) succeeded", doc)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"ok", `{"a":[1,2,{"b":null}],"c":true}`, ""},
		{"dup", `{"uri":"/a","uri":"/b"}`, `duplicate key "uri"`},
		{"dup escaped", `{"a":1,"\u0061":2}`, `duplicate key "a"`},
		{"trailing", `{"a":1} x`, "Expected the end but found invalid token at character 9"},
		{"trailing obj", `{} {}`, "Expected the end but found invalid token at character 4"},
		{"empty", ``, "Expected value but found T_END at character 1"},
		{"utf8", "{\"a\":\"\xff\"}", "invalid UTF-8 at character 7"},
		{"deep", strings.Repeat("[", 6) + strings.Repeat("]", 6), "Found too many nested data structures (6) at character 6"},
		{"syntax", `{"a":}`, "invalid character '}' looking for beginning of value at character 6"},
		{"truncated", `{"a":1`, "unexpected end of JSON input at character 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(tt.body), 5)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("got %q want %q", got, tt.wantErr)
			}
		})
	}
	v, err := DecodeJSON([]byte(`{"n":12345678901234567890123,"f":1.5}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["n"].(json.Number) != "12345678901234567890123" || m["f"].(json.Number) != "1.5" {
		t.Errorf("numbers not exact: %v", m)
	}
}

func TestLuaHelpers(t *testing.T) {
	for in, want := range map[float64]string{0: "0", -1: "-1", 0.5: "0.5", 70000: "70000", 1e20: "1e+20", 1234567890123456: "1.2345678901235e+15"} {
		if got := LuaNumber(in); got != want {
			t.Errorf("LuaNumber(%v) = %s want %s", in, got, want)
		}
	}
	if got := LuaQuote("a\"\\\n\r\x01\x012"); got != "\"a\\\"\\\\\\\n\\r\\1\\0012\"" {
		t.Errorf("LuaQuote = %q", got)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,2,"x"]`, `{"a":{"a":{"a":[]}}}`, `"x"`, `1e99`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	s := MustCompile([]byte(testSchema))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeJSON(data, 20)
		if err != nil {
			return
		}
		_ = s.Validate(v)
	})
}

func TestValidateRefAndRoots(t *testing.T) {
	s := MustCompile([]byte(`{"definitions":{"port":{"type":"integer","maximum":65535}},
		"type":"object","properties":{"p":{"$ref":"#/definitions/port"},"list":{"type":"array","items":{"$ref":"#/definitions/port"}}},
		"anyOf":[{"required":["p"]},{"required":["list","x"]}]}`))
	tests := []struct{ body, want string }{
		{`{"p":70000}`, `property "p" validation failed: expected 70000 to be at most 65535`},
		{`{"p":1,"list":[1,"a"]}`, `property "list" validation failed: failed to validate item 2: wrong type: expected integer, got string`},
		{`{}`, `object matches none of the required: ["p"] or ["list","x"]`},
		{`{"p":1}`, ``},
	}
	for _, tt := range tests {
		v, _ := DecodeJSON([]byte(tt.body), 10)
		err := s.Validate(v)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: got %q want %q", tt.body, got, tt.want)
		}
	}
}

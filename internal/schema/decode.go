package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// DecodeJSON decodes an untrusted JSON document into maps, slices, strings,
// bools, nil and json.Number (so integers of any size round-trip exactly and
// validate as integers). It is stricter than encoding/json: it rejects
// duplicate object keys, invalid UTF-8, trailing data after the value and
// nesting deeper than maxDepth (maxDepth <= 0 means 1000). Error texts are
// meant to follow "invalid request body: ".
func DecodeJSON(data []byte, maxDepth int) (any, error) {
	if maxDepth <= 0 {
		maxDepth = 1000
	}
	if len(bytes.TrimLeft(data, " \t\r\n")) == 0 {
		return nil, errors.New("Expected value but found T_END at character 1")
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("invalid UTF-8 at character %d", firstInvalidUTF8(data)+1)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0, maxDepth)
	if err != nil {
		return nil, syntaxMessage(err, dec)
	}
	off := dec.InputOffset()
	if rest := bytes.TrimLeft(data[off:], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("Expected the end but found invalid token at character %d", int(off)+len(data[off:])-len(rest)+1)
	}
	return v, nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

type depthError struct{ depth int }

func (e *depthError) Error() string {
	return fmt.Sprintf("Found too many nested data structures (%d)", e.depth)
}

type dupError struct{ key string }

func (e *dupError) Error() string { return fmt.Sprintf("duplicate key %q", e.key) }

func syntaxMessage(err error, dec *json.Decoder) error {
	var se *json.SyntaxError
	var de *depthError
	var dup *dupError
	switch {
	case errors.As(err, &dup):
		return dup
	case errors.As(err, &de):
		return fmt.Errorf("%s at character %d", de.Error(), dec.InputOffset())
	case errors.As(err, &se):
		return fmt.Errorf("%s at character %d", se.Error(), se.Offset+1)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("unexpected end of JSON input at character %d", dec.InputOffset()+1)
	}
	return err
}

func decodeValue(dec *json.Decoder, depth, maxDepth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	return decodeToken(dec, tok, depth, maxDepth)
}

func decodeToken(dec *json.Decoder, tok json.Token, depth, maxDepth int) (any, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	depth++
	if depth > maxDepth {
		return nil, &depthError{depth}
	}
	switch d {
	case '{':
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("expected object key string")
			}
			if _, dup := obj[key]; dup {
				return nil, &dupError{key}
			}
			v, err := decodeValue(dec, depth, maxDepth)
			if err != nil {
				return nil, err
			}
			obj[key] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth, maxDepth)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected delimiter %q", d)
}

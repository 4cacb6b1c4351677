package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"khproxy/problem"
)

// decodeStrict decodes exactly one JSON object into v, rejecting unknown
// fields, and maps failures to validation errors naming the field.
func decodeStrict(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return validationError("body", "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return validationError("body", "must contain exactly one JSON object")
	}
	return nil
}

func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return validationError("body", fmt.Sprintf("malformed JSON at byte offset %d", syn.Offset))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return validationError("body", "must be a JSON object")
		}
		want := "a string"
		if k := typ.Type.String(); strings.Contains(k, "int") {
			want = "an integer"
		} else if strings.HasPrefix(k, "map") {
			want = "an object"
		}
		return validationError(typ.Field, "must be "+want)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return validationError("body", "truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return validationError(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	return validationError("body", "invalid JSON")
}

func fieldErrors(fields []problem.FieldError) *apiError {
	return &apiError{code: codeValidation, detail: "The request failed validation; see errors.", fields: fields}
}

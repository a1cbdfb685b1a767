package model

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refused request: an HTTP status, the offending field and a
// message that names the value and what would be accepted.
type Error struct {
	Status int    `json:"-"`
	Field  string `json:"field,omitempty"`
	Msg    string `json:"error"`
}

func (e *Error) Error() string { return e.Msg }

func invalid(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NotFound builds a 404 error for a missing object.
func NotFound(kind, key string) *Error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf("%s %q not found", kind, key)}
}

// StatusOf returns the HTTP status for err: the Error's own, or 500.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}

// Invalid builds a 400 error for a field; for packages that check input
// against the kernel (an interface that does not exist, say).
func Invalid(field, format string, args ...any) *Error { return invalid(field, format, args...) }

package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// MaxBodyBytes is the largest request body the API reads. The largest
// object, an endpoint with its env, fits many times over.
const MaxBodyBytes = 1 << 20

// DefaultBodyTimeout is how long a client has, from the start of the
// handler, to send the whole request body (the headers have their own 10 s,
// portcullisd's ReadHeaderTimeout).
const DefaultBodyTimeout = 10 * time.Second

// limitBody caps every request body at MaxBodyBytes and gives the client
// BodyTimeout from the headers to send it. The deadline is set here, per
// request, rather than as http.Server.ReadTimeout, so that every server
// built on Handler (portcullisd's, the tests') has it. It is taken off once
// the body is read: net/http does so too when it starts its read in the
// background, but a long change must not depend on that, as its context
// would be cancelled by a read timing out behind it.
func (s *Server) limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			body := r.Body
			if err := rc.SetReadDeadline(time.Now().Add(s.BodyTimeout)); err == nil {
				body = &deadlineBody{ReadCloser: r.Body, timeout: s.BodyTimeout,
					clear: func() { rc.SetReadDeadline(time.Time{}) }}
			}
			r.Body = http.MaxBytesReader(w, body, MaxBodyBytes)
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody takes the read deadline off when the body has been read to
// its end, and turns the deadline passing into a 408 that says why.
type deadlineBody struct {
	io.ReadCloser
	timeout time.Duration
	clear   func()
	done    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		b.clear()
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = &model.Error{Status: http.StatusRequestTimeout, Field: "body",
			Msg: fmt.Sprintf("request body did not arrive within %s of the headers: send the whole body at once", b.timeout)}
	}
	return n, err
}

// decode reads one JSON object from the body into v, refusing unknown
// fields and anything but white space after the object.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), r.Body))
	if err != nil {
		return bodyError(err)
	}
	if rest = bytes.TrimSpace(rest); len(rest) > 0 {
		const show = 64
		more := ""
		if len(rest) > show {
			rest, more = rest[:show], fmt.Sprintf(" (and %d bytes more)", len(rest)-show)
		}
		return &model.Error{Status: http.StatusBadRequest, Field: "body",
			Msg: fmt.Sprintf("request body has %q%s after its JSON object: send one object and nothing after it", rest, more)}
	}
	return nil
}

// bodyError says what was wrong with a body that could not be read.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var refused *model.Error
	switch {
	case errors.As(err, &tooBig):
		return &model.Error{Status: http.StatusRequestEntityTooLarge, Field: "body",
			Msg: fmt.Sprintf("request body is larger than the limit of %d bytes: send less", tooBig.Limit)}
	case errors.As(err, &refused):
		return refused
	}
	return &model.Error{Status: http.StatusBadRequest, Field: "body", Msg: "request body: " + err.Error()}
}

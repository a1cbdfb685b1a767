package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/portcullis/portcullis/dataplane/model"
)

// errOutOfOrder is a snapshot whose sections are not in the order of
// their dependencies (not one this package wrote): it is read whole.
var errOutOfOrder = errors.New("snapshot sections out of order")

// streamSnapshot resolves the snapshot file at path object by object,
// never holding the file or the decoded State: at 100,000 mappings those
// are 10 and 30 MB beside the resolved state, at start. It returns the
// resolved state and the snapshot's sequence number; a missing file is
// the empty state. A file whose sections are not in the order Loader
// takes fails with errOutOfOrder; one that is not JSON fails as damaged.
func streamSnapshot(path string) (*model.Resolved, uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return model.NewResolved(), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot: %w", err)
	}
	defer f.Close()
	l := model.NewLoader()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 64<<10))
	var seq uint64
	rank := -1
	err = objectEach(dec, func(section string) error {
		if section == "seq" {
			return dec.Decode(&seq)
		}
		r := slices.Index(model.LoadKinds, section)
		switch {
		case r < 0:
			var skip json.RawMessage // a field of a later version
			return dec.Decode(&skip)
		case r < rank:
			return errOutOfOrder
		}
		rank = r
		if section == "settings" {
			return l.Put(section, "", dec.Decode)
		}
		return objectEach(dec, func(key string) error { return l.Put(section, key, dec.Decode) })
	})
	var jerr *json.SyntaxError
	var terr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errOutOfOrder):
		return nil, 0, err
	case errors.As(err, &jerr), errors.As(err, &terr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errNotObject):
		return nil, 0, fmt.Errorf("%w: snapshot %s: %w; restore it from a backup (it is replaced whole, never appended to)", ErrDamaged, path, err)
	case err != nil:
		return nil, 0, fmt.Errorf("state snapshot: %w", err)
	}
	return l.Resolved(), seq, nil
}

var errNotObject = errors.New("not a JSON object")

// objectEach reads a JSON object (or null) from dec, calling f with each
// key; f must read the key's value.
func objectEach(dec *json.Decoder, f func(key string) error) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil // null: an empty section
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: found %v", errNotObject, t)
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := t.(string)
		if !ok {
			return fmt.Errorf("%w: key %v", errNotObject, t)
		}
		if err := f(key); err != nil {
			return err
		}
	}
	_, err = dec.Token() // '}'
	return err
}

package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// txn journals one Apply: every map write records how to undo it, so a
// failure part-way puts the maps back as they were (B20). Attachments made
// in the call are undone the same way; detaches only run after commit.
type txn struct {
	maps  map[string]*ebpf.Map
	undo  []func() error
	after []func() error
	// changed counts the writes that found the kernel holding something
	// else (or nothing) and the deletes that found something: in a full
	// sync of an up-to-date datapath it stays 0, so it measures drift.
	changed int
}

// put writes key=val into map name, remembering the previous value.
func (t *txn) put(name string, key, val any) error {
	m := t.maps[name]
	prev := make([]byte, m.ValueSize())
	existed := true
	if err := m.Lookup(key, prev); err != nil {
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		existed = false
	}
	if !existed || !sameBytes(prev, val) {
		t.changed++
	}
	if err := m.Update(key, val, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update %s %+v: %w", name, key, err)
	}
	t.undo = append(t.undo, func() error {
		if existed {
			return m.Update(key, prev, ebpf.UpdateAny)
		}
		return ignoreNotExist(m.Delete(key))
	})
	return nil
}

// del removes key from map name; a missing key is fine.
func (t *txn) del(name string, key any) error {
	m := t.maps[name]
	prev := make([]byte, m.ValueSize())
	if err := m.Lookup(key, prev); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := ignoreNotExist(m.Delete(key)); err != nil {
		return fmt.Errorf("delete from %s: %w", name, err)
	}
	t.changed++
	t.undo = append(t.undo, func() error { return m.Update(key, prev, ebpf.UpdateAny) })
	return nil
}

// onRollback registers an undo step that is not a map write.
func (t *txn) onRollback(f func() error) { t.undo = append(t.undo, f) }

// onCommit registers a step that runs only once everything succeeded.
func (t *txn) onCommit(f func() error) { t.after = append(t.after, f) }

// rollback undoes everything in reverse order and reports what could not be
// undone (joined to the error that caused the rollback by the caller).
func (t *txn) rollback() error {
	var errs []error
	for i := len(t.undo) - 1; i >= 0; i-- {
		if err := t.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	t.undo = nil
	return errors.Join(errs...)
}

func (t *txn) commit() error {
	var errs []error
	for _, f := range t.after {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	t.undo, t.after = nil, nil
	return errors.Join(errs...)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// sameBytes reports whether val, laid out as the kernel stores it, is b.
// A value that cannot be laid out counts as different.
func sameBytes(b []byte, val any) bool {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, val); err != nil {
		return false
	}
	return bytes.Equal(buf.Bytes(), b)
}

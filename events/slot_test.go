package events

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fullEvent returns an event with every field set (strings to their name
// plus i), so that a field the ring's slots forgot would show.
func fullEvent(t *testing.T, i int) Event {
	t.Helper()
	var ev Event
	v := reflect.ValueOf(&ev).Elem()
	for f := 0; f < v.NumField(); f++ {
		fv, name := v.Field(f), v.Type().Field(f).Name
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(fmt.Sprintf("%s-%d", name, i))
		case reflect.Int, reflect.Int64:
			fv.SetInt(int64(1000*f + i))
		case reflect.Uint32, reflect.Uint64:
			fv.SetUint(uint64(1000*f + i))
		case reflect.Float64:
			fv.SetFloat(float64(f) + 0.5)
		case reflect.Slice:
			fv.Set(reflect.ValueOf([]string{"idle", fmt.Sprintf("r-%d", i)}))
		case reflect.Pointer:
			rtt := 0.25 + float64(i)
			fv.Set(reflect.ValueOf(&rtt))
		case reflect.Struct:
			fv.Set(reflect.ValueOf(t0.Add(3)))
		default:
			t.Fatalf("Event.%s: a %s field the ring's slots may not keep; add it to slot and to this test", name, fv.Kind())
		}
	}
	return ev
}

// TestRingKeepsEveryField: what a query returns is the event as added, field
// for field, whether its values fit the slot's codes or not: too many
// reasons, more distinct values than the codes hold, no reasons (nil) and
// an empty list of them.
func TestRingKeepsEveryField(t *testing.T) {
	r := NewRing(1000, nil)
	var want []Event
	add := func(ev Event) {
		want = append(want, r.Add(ev))
	}
	for i := range 300 { // 300 × 10 coded values: the table fills up
		add(fullEvent(t, i))
	}
	many := fullEvent(t, 1)
	many.Reasons = []string{"a", "b", "c", "d", "e"}
	add(many)
	none := fullEvent(t, 2)
	none.Reasons, none.RTTSeconds = nil, nil
	add(none)
	empty := fullEvent(t, 3)
	empty.Reasons = []string{}
	add(empty)
	got := r.Query(Query{Forward: true, Limit: MaxLimit}).Events
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events as queried (-added +got):\n%s", diff)
	}
	if got[len(got)-2].Reasons != nil || got[len(got)-1].Reasons == nil {
		t.Errorf("reasons nil-ness lost: %#v, %#v", got[len(got)-2].Reasons, got[len(got)-1].Reasons)
	}
	// The caller's copy shares nothing with the ring.
	got[0].Reasons[0] = "changed"
	*got[0].RTTSeconds = -1
	again := r.Query(Query{Forward: true, Limit: 1}).Events[0]
	if again.Reasons[0] != "idle" || *again.RTTSeconds != 0.25 {
		t.Errorf("the ring's event changed with the caller's copy: %v %v", again.Reasons, *again.RTTSeconds)
	}
}

// TestRingPacksAddresses: addresses come back as added, packed when their
// text is netip's (IPv4, IPv6, v4-mapped) and kept whole otherwise (a zone,
// no address, not an address); counts beyond 32 bits too.
func TestRingPacksAddresses(t *testing.T) {
	r := NewRing(10, nil)
	for _, c := range []struct {
		local, remote string
		pid           int
		packed        bool
	}{
		{"198.51.100.2:35527", "192.0.2.2:49182", 4242, true},
		{"[2001:db8:2::2]:37743", "[2001:db8:1::2]:54380", 1, true},
		{"[::ffff:198.51.100.2]:80", "0.0.0.0:0", 0, true},
		{"[fe80::1%eth0]:22", "[2001:db8::1]:22", 1, false},
		{"", "", 1, false},
		{"198.51.100.2:80", "invalid AddrPort", 1, false},
		{"198.51.100.2:080", "192.0.2.2:1", 1, false}, // parses, but formats otherwise
		{"198.51.100.2:80", "192.0.2.2:1", 1 << 40, false},
	} {
		ev := Event{Kind: Suspect, Local: c.local, Remote: c.remote, PID: c.pid, Attempts: 3, Replies: 1}
		want := r.Add(ev)
		s := r.at(r.n - 1)
		if packed := s.whole == nil; packed != c.packed {
			t.Errorf("%q %q pid %d: packed %v, want %v", c.local, c.remote, c.pid, packed, c.packed)
		}
		got := r.Query(Query{Limit: 1}).Events[0]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q %q (-added +got):\n%s", c.local, c.remote, diff)
		}
	}
}

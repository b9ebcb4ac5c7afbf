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

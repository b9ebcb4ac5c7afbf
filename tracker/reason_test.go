package tracker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReasonsRoundTrip(t *testing.T) {
	for _, r := range AllReasons {
		got, ok := ParseReason(r.String())
		if !ok || got != r {
			t.Errorf("ParseReason(%q) = %v, %v; want %v, true", r.String(), got, ok, r)
		}
	}
	if _, ok := ParseReason("bogus"); ok {
		t.Error("ParseReason(bogus) succeeded")
	}
	var rs Reasons
	rs = rs.With(ReasonCloseWait).With(ReasonIdle)
	if diff := cmp.Diff([]string{"idle", "close_wait"}, rs.Strings()); diff != "" {
		t.Errorf("Strings() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rs.Strings(), rs.Names()); diff != "" {
		t.Errorf("Names() (-Strings +Names):\n%s", diff)
	}
	if got := testing.AllocsPerRun(10, func() { _ = rs.Names() }); got != 0 {
		t.Errorf("Names allocates %v times", got)
	}
	if rs.Probeable() != true || Reasons(0).With(ReasonZeroWindow).Probeable() {
		t.Error("Probeable: idle must be probeable, zero_window alone must not")
	}
}

func TestCanGhost(t *testing.T) {
	rs := func(r ...Reason) Reasons {
		var s Reasons
		for _, x := range r {
			s = s.With(x)
		}
		return s
	}
	tests := []struct {
		rs   Reasons
		want bool
	}{
		{rs(ReasonIdle), true},
		{rs(ReasonRetransmitting), true},
		{rs(ReasonKeepaliveFailing), true},
		{rs(ReasonKeepaliveFailing, ReasonCloseWait), true},
		{rs(ReasonZeroWindow), false},
		{rs(ReasonIdle, ReasonZeroWindow), false},
		{rs(ReasonRetransmitting, ReasonZeroWindow), false},
		{rs(ReasonCloseWait), false},
		{rs(ReasonFinWait2), false},
		{rs(ReasonLastAck), false},
		{0, false},
	}
	for _, tt := range tests {
		if got := tt.rs.CanGhost(); got != tt.want {
			t.Errorf("Reasons{%s}.CanGhost() = %v, want %v", tt.rs, got, tt.want)
		}
	}
}

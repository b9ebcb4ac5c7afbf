package positive

// Number is what a configuration's counts, sizes, rates and durations are.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 |
		~float32 | ~float64
}

// Or returns v when it is positive, else def: zero, a negative value and
// NaN all mean "unset".
func Or[T Number](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

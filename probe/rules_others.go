//go:build !linux

package probe

// unfollowedRules has no policy routing to read outside Linux.
func unfollowedRules(string) (bool, error) { return false, nil }

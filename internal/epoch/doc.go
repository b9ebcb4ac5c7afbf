// Package epoch keeps times compactly, as nanoseconds from an epoch.
package epoch

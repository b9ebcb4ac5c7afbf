package kill

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(ownerEnv) == "1" {
		os.Exit(runOwner())
	}
	os.Exit(m.Run())
}

package config_test

import (
	"strings"
	"testing"

	"khproxy/config"
)

func TestLoadDemo(t *testing.T) {
	d, err := config.LoadDemo(nil)
	if err != nil || d.EmulatorListen != "127.0.0.1:0" {
		t.Fatalf("default: %+v, %v; want 127.0.0.1:0", d, err)
	}
	d, err = config.LoadDemo([]string{"KH_EMULATOR_LISTEN=127.0.0.1:8081"})
	if err != nil || d.EmulatorListen != "127.0.0.1:8081" {
		t.Fatalf("set: %+v, %v", d, err)
	}
	for _, bad := range []string{"", "8081", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "[::1]:-1"} {
		t.Run(bad, func(t *testing.T) {
			_, err := config.LoadDemo([]string{"KH_EMULATOR_LISTEN=" + bad})
			if err == nil || !strings.Contains(err.Error(), "KH_EMULATOR_LISTEN") {
				t.Errorf("KH_EMULATOR_LISTEN=%q: %v, want an error naming the variable", bad, err)
			}
		})
	}
	if vars := config.DemoVars(); len(vars) != 1 || vars[0].Name != "KH_EMULATOR_LISTEN" {
		t.Errorf("DemoVars = %+v", vars)
	}
}

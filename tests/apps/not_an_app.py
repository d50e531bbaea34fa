"""Not an application: boot_error kind `interface` (exit 13)."""

app = 42

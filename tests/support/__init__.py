"""Test support: helpers that only tests use (emulator workarounds live here, never in infra/)."""

"""The error tree: every wire error has a stable, unique code and a status from the DESIGN table."""

from __future__ import annotations

from shared import errors

DESIGN_STATUSES = {400, 403, 404, 409, 413, 415, 422, 429, 500, 503, 504}


def test_wire_codes_are_unique_and_statuses_known() -> None:
    classes = errors.wire_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert cls.status in DESIGN_STATUSES, cls
        assert cls.code.isidentifier() and cls.code == cls.code.lower()


def test_every_design_status_has_a_class() -> None:
    assert {cls.status for cls in errors.wire_error_classes()} == DESIGN_STATUSES


def test_codes_map_back_to_classes() -> None:
    for cls in errors.wire_error_classes():
        assert errors.error_for_code(cls.code) is cls
    assert errors.error_for_code("no_such_code") is errors.WireError


def test_wire_errors_carry_retry_after_and_rid() -> None:
    exc = errors.RateLimited("queue full", retry_after_ms=250)
    assert exc.retry_after_ms == 250 and exc.rid is None
    assert str(exc) == "429 rate_limited: queue full"


def test_config_error_names_file_key_and_value() -> None:
    exc = errors.ConfigError("/etc/x.toml", "gateway.port", 70000, "out of range [1, 65535]")
    assert str(exc) == "/etc/x.toml: gateway.port = 70000: out of range [1, 65535]"
    long = errors.ConfigError("f.toml", "k", "v" * 500, "too long")
    assert len(str(long)) < 200

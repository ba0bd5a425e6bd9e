from __future__ import annotations

from agent.checks import OUTPUT_MAX_SIZE, OutputBuffer, cap_output


def test_cap_output_keeps_short_text() -> None:
    assert cap_output("hello") == "hello"
    exact = "x" * OUTPUT_MAX_SIZE
    assert cap_output(exact) == exact


def test_cap_output_cuts_long_text_within_limit() -> None:
    text = "a" * 10_000
    out = cap_output(text)
    assert len(out.encode()) <= OUTPUT_MAX_SIZE
    assert out.startswith("aaaa")
    assert out.endswith("of 10000 bytes)")
    assert " ... (captured " in out


def test_cap_output_never_splits_a_character() -> None:
    out = cap_output("é" * 5000)
    assert len(out.encode()) <= OUTPUT_MAX_SIZE
    out.encode("utf-8", errors="strict")
    assert "\ufffd" not in out


def test_output_buffer_keeps_tail() -> None:
    buf = OutputBuffer(limit=64)
    buf.write(b"head-" + b"x" * 100)
    buf.write(b"-tail")
    text = buf.text()
    assert len(text.encode()) <= 64
    assert text.startswith("Captured ")
    assert "of 110 bytes" in text
    assert text.endswith("-tail")
    assert "head" not in text


def test_output_buffer_small_output_verbatim() -> None:
    buf = OutputBuffer()
    buf.write(b"ok\n")
    assert buf.text() == "ok\n"

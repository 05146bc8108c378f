"""The streaming extension's building blocks and their errors for bad input."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import mcp_ws
from mcp_ws.sdk.streaming import Aggregate, as_json_safe, binary_block, block_bytes


def test_aggregation_rules() -> None:
    agg = Aggregate()
    agg.add([{"type": "text", "text": "Hel"}])
    agg.add([{"type": "image", "data": b"\x01\x02", "mimeType": "image/png"}])
    agg.add([{"type": "text", "text": "lo"}])  # no index: the last text block
    agg.add([{"type": "text", "text": "new", "index": 2}])  # the next index starts a block
    agg.add([{"type": "text", "text": "!", "index": 0}])
    assert agg.content == [
        {"type": "text", "text": "Hello!"},
        {"type": "image", "data": "AQI=", "mimeType": "image/png"},  # base64 in the aggregate
        {"type": "text", "text": "new"},
    ]
    assert agg.text == "Hello!new"
    agg.add_structured({"a": 1})
    agg.add_structured({"b": 2})
    assert agg.structured == {"a": 1, "b": 2}
    agg.add_structured([1, 2])  # not an object: replaces
    assert agg.structured == [1, 2]


def test_bad_indexes_are_refused_and_change_nothing() -> None:
    agg = Aggregate()
    agg.add([{"type": "text", "text": "x"}, {"type": "image", "data": "", "mimeType": "image/png"}])
    with pytest.raises(ValueError, match="not a text block"):
        agg.add([{"type": "text", "text": "y", "index": 1}])  # an image
    with pytest.raises(ValueError, match="not a text block"):
        agg.add([{"type": "text", "text": "y", "index": 7}])
    with pytest.raises(TypeError, match="integer"):
        agg.add([{"type": "text", "text": "y", "index": "0"}])
    assert agg.text == "x"
    assert len(agg.content) == 2


def test_binary_blocks_by_mime_type_raw_or_base64() -> None:
    assert binary_block(b"\xff", "audio/wav", raw=True) == {
        "type": "audio",
        "data": b"\xff",
        "mimeType": "audio/wav",
    }
    blob = binary_block(b"\xff", "application/pdf", raw=False, uri="file:///a.pdf")
    assert blob == {
        "type": "resource",
        "resource": {"uri": "file:///a.pdf", "mimeType": "application/pdf", "blob": "/w=="},
    }
    raw_blob = binary_block(b"\xff", "application/pdf", raw=True)
    assert as_json_safe(raw_blob)["resource"]["blob"] == "/w=="
    assert block_bytes(raw_blob) == block_bytes(blob) == b"\xff"
    assert block_bytes({"type": "text", "text": "no"}) is None


def fake_context(meta: dict[str, Any]) -> Any:
    request = SimpleNamespace(params={"_meta": meta}, meta=None, session=None, request_id=1)
    return SimpleNamespace(request_context=request)


@pytest.mark.anyio
async def test_partial_results_refuse_bad_input_and_use_outside_the_block() -> None:
    out = mcp_ws.partial_results(fake_context({}))
    assert not out.streaming
    with pytest.raises(RuntimeError, match="async with"):
        await out.send_text("too early")
    async with out:
        with pytest.raises(TypeError, match="str"):
            await out.send_text(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes"):
            await out.send_bytes("text", "image/png")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'type'"):
            await out.send_content({"text": "no type"})
        with pytest.raises(ValueError, match="not a text block"):
            await out.send_text("x", index=3)
        await out.send_text("kept")
    assert out.text == "kept"  # the refused input changed nothing
    with pytest.raises(RuntimeError, match="once"):
        async with out:
            pass
    with pytest.raises(RuntimeError, match="async with"):
        await out.send_text("too late")
    result = out.result()
    assert result.meta is None  # no opt-in, no marker
    assert [b.model_dump(exclude_none=True) for b in result.content] == [
        {"type": "text", "text": "kept"}
    ]


def test_a_boolean_token_is_no_opt_in() -> None:
    assert not mcp_ws.partial_results(fake_context({"partialResultToken": True})).streaming
    assert mcp_ws.partial_results(fake_context({"partialResultToken": 7})).streaming


def test_stream_tool_wants_a_session() -> None:
    with pytest.raises(TypeError, match=r"ClientSession or an mcp\.Client"):
        mcp_ws.stream_tool(object(), "tool")


def test_a_tool_stream_has_no_result_before_its_end() -> None:
    stream = mcp_ws.stream_tool(SimpleNamespace(call_tool=lambda *a, **k: None), "tool")
    with pytest.raises(RuntimeError, match="not finished"):
        _ = stream.result
    with pytest.raises(RuntimeError, match="'async with' block"):
        stream.cancel()


def test_start_meta_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="meta must be a mapping"):
        mcp_ws.partial_results(fake_context({}), meta=["not", "a", "mapping"])  # type: ignore[arg-type]

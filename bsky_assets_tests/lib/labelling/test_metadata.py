"""What label assets show of post text in the UI: inert, one line, truncated."""

from bsky_assets.lib.labelling.metadata import markdown_cell


def test_post_text_cannot_act_as_markdown_or_html() -> None:
    hostile = (
        "<script>alert(1)</script> [click](javascript:alert(1)) | col\nnext ![x](http://e/x.png)"
    )
    cell = markdown_cell(hostile, limit=500)
    assert "<" not in cell and ">" not in cell and "\n" not in cell
    assert "\\[click\\]\\(javascript:alert\\(1\\)\\)" in cell  # no link
    assert "\\|" in cell and "\\!\\[x\\]" in cell  # no new column, no image


def test_long_text_is_truncated_and_nothing_is_shown_as_null() -> None:
    assert markdown_cell("word " * 100, limit=20).endswith("…")
    assert len(markdown_cell("abcdefghij" * 10, limit=20)) == 20
    assert markdown_cell(None) == "∅"

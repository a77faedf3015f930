"""How posts go into a prompt: as data, never as instructions.

Each post is embedded as a JSON object (`{"id": ..., "text": ...}`), so quotes, newlines and
look-alike delimiters inside a post are escaped and one post cannot close its own block and steer
another's label. Ids are short and per prompt (p0, p1, ...); the client maps them back to post
URIs and never matches answers by position.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from bsky_assets.llm.task import LLMTask

# Characters some parsers treat as line breaks although JSON leaves them raw: escaped, so a post
# is always exactly one line of the prompt, whatever splits it (other controls JSON escapes).
_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAK = re.compile("[\u0085\u2028\u2029]")


def _post_json(post_id: str, text: str) -> str:
    encoded = json.dumps({"id": post_id, "text": text}, ensure_ascii=False)
    return _LINE_BREAK.sub(lambda m: _LINE_BREAKS[m.group()], encoded)


def build_messages(task: LLMTask, posts: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Chat messages asking `task` of (prompt id, text) pairs."""
    lines = "\n".join(_post_json(post_id, text) for post_id, text in posts)
    return [
        {"role": "system", "content": task.system_prompt},
        {"role": "user", "content": task.user_template.format(count=len(posts), posts=lines)},
    ]


def estimate_tokens(text: str) -> int:
    """~4 characters per token, the usual rule of thumb for English with BPE tokenizers."""
    return max(1, math.ceil(len(text) / 4))

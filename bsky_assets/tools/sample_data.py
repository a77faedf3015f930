"""Synthetic landing batches that look like a real day of Bluesky posts.

Used by the demo (so the project runs without any shared data) and by the benchmark (up to
1,000,000 posts). Deterministic for a given seed. Mixes the cases the graph must handle: political
and everyday posts, replies, empty and very short texts, non-English posts, URIs repeated across
and within batches, and (optionally) a few malformed lines.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

TOPICS: dict[str, list[str]] = {
    "left": [
        "Medicare for all would save lives and money. Call your senator about the {thing} bill.",
        "Union workers at the {place} plant just won a contract. Solidarity! #labor",
        "Climate change is the crisis of our time and the {thing} act is the bare minimum.",
        "Reproductive rights are on the ballot in {place}. Vote like your freedom depends on it.",
        "Raise the minimum wage. Nobody working full time in {place} should live in poverty.",
    ],
    "right": [
        "Secure the border now. {place} cannot take another year of this policy.",
        "Lower taxes and less regulation built {place}. The {thing} bill is government overreach.",
        "Defend the Second Amendment. The {thing} proposal is an attack on law-abiding citizens.",
        "Parents, not bureaucrats, should decide what is taught in {place} schools.",
        "Inflation is crushing families in {place} and Washington keeps spending.",
    ],
    "moderate": [
        "Both parties should sit down and pass the {thing} bill; compromise is not a dirty word.",
        "I vote for the candidate, not the party. The debate in {place} last night was useful.",
        "Early voting starts today in {place}. Whatever your views, make a plan to vote.",
    ],
    "everyday": [
        "Made sourdough for the first time this weekend in {place} and it actually rose!",
        "Anyone have recommendations for a good mechanical keyboard? Mine finally died.",
        "The sunset over {place} tonight was unreal. Photos don't do it justice.",
        "Finished the {thing} novel on the train. That ending! No spoilers please.",
        "Our cat has decided the new {thing} box is her home now. We live here too, apparently.",
        "Three hours of debugging and it was a missing comma. Classic Monday.",
        "Reading about atproto feed generators tonight, the design is really neat.",
    ],
    "toxic": [
        "You are a complete idiot and everyone in {place} knows it.",
        "Shut up, nobody asked for your stupid opinion about {thing}.",
        "What a pathetic loser take. Delete your account.",
        "This is the dumbest damn thing I have read all week, you clown.",
    ],
    "other_language": [
        "Qué bonito día en {place}, me encanta el otoño.",
        "Je viens de finir un livre incroyable sur {thing}.",
        "Heute ist das Wetter in {place} wirklich schön.",
        "今日はとても良い天気ですね。",
    ],
    "short": ["lol", "same", "yes!!", "👀", "ok", "", "", "nice one"],
}
WEIGHTS = {
    "left": 8,
    "right": 7,
    "moderate": 3,
    "everyday": 45,
    "toxic": 5,
    "other_language": 8,
    "short": 12,
}
PLACES = ["Ohio", "Texas", "Oregon", "Georgia", "Pennsylvania", "Arizona", "Maine", "Seattle"]
THINGS = ["infrastructure", "housing", "farm", "budget", "privacy", "energy", "childcare"]
LANGS = {"other_language": ["es", "fr", "de", "ja"]}
MALFORMED_LINES = [
    b'{"uri": "at://did:plc:broken/app.bsky.feed.post/1", "text": "unterminated',
    b'["not", "an", "object"]',
    b'{"uri": "at://did:plc:nocreated/app.bsky.feed.post/2", "text": "no created_at here",'
    b' "preprocessing_timestamp": "2024-01-01T00:00:00Z"}',
    b'{"uri": "at://did:plc:nul/app.bsky.feed.post/3", "text": "nul \\u0000 byte",'
    b' "created_at": "2024-01-01T00:00:00Z", "preprocessing_timestamp": "2024-01-01T00:00:00Z"}',
    b"\xff\xfe not utf-8 at all",
]


@dataclass(frozen=True)
class SampleDay:
    day: date
    files: list[Path]
    lines: int


def _post(rng: random.Random, day: date, index: int, batch_time: datetime) -> dict:
    topic = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    text = rng.choice(TOPICS[topic]).format(place=rng.choice(PLACES), thing=rng.choice(THINGS))
    author = f"did:plc:sample{rng.randrange(50_000):05d}"
    created = batch_time - timedelta(seconds=rng.randrange(1, 3600))
    uri = f"at://{author}/app.bsky.feed.post/{day:%Y%m%d}{index:08d}"
    is_reply = rng.random() < 0.4
    parent = f"at://did:plc:sample{rng.randrange(50_000):05d}/app.bsky.feed.post/p{index}"
    langs = (
        [rng.choice(LANGS[topic])] if topic in LANGS else (["en"] if rng.random() < 0.8 else None)
    )
    return {
        "uri": uri,
        "cid": f"bafyrei{index:052d}",
        "text": text,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "indexed_at": created.isoformat().replace("+00:00", "Z"),
        "preprocessing_timestamp": batch_time.isoformat().replace("+00:00", "Z"),
        "author_did": author,
        "author_handle": f"user{author[-5:]}.bsky.social",
        "langs": langs,
        "reply_parent": parent if is_reply else None,
        "reply_root": parent if is_reply else None,
        "like_count": rng.randrange(0, 200),
        "reply_count": rng.randrange(0, 20),
        "repost_count": rng.randrange(0, 30),
        "source": "sample_generator",
    }


def _lines(
    day: date, posts: int, rng: random.Random, batch_size: int, malformed: bool
) -> Iterator[tuple[int, bytes]]:
    """(batch number, line) pairs; ~1 % of posts repeat an earlier uri in a later batch."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    recent: list[dict] = []
    for index in range(posts):
        batch = index // batch_size
        batch_time = start + timedelta(minutes=30 * (batch % 48), seconds=batch // 48)
        if recent and rng.random() < 0.01:  # a re-preprocessed post: same uri, newer timestamp
            post = dict(rng.choice(recent))
            post["preprocessing_timestamp"] = batch_time.isoformat().replace("+00:00", "Z")
        else:
            post = _post(rng, day, index, batch_time)
            if len(recent) < 1000:
                recent.append(post)
        yield batch, json.dumps(post, ensure_ascii=False).encode()
    if malformed:
        for line in MALFORMED_LINES:
            yield (posts - 1) // batch_size, line


def write_sample_day(
    landing: Path,
    day: date,
    posts: int = 2_000,
    batch_size: int = 500,
    seed: int = 7,
    malformed: bool = True,
    gzip_batches: bool = False,
) -> SampleDay:
    """Write `posts` posts as batches under `<landing>/<day>/`, each via write-then-rename."""
    folder = landing / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    suffix = ".jsonl.gz" if gzip_batches else ".jsonl"
    files: list[Path] = []
    lines = 0
    batches = _lines(day, posts, rng, batch_size, malformed)
    for batch, numbered in itertools.groupby(batches, key=lambda pair: pair[0]):
        final = folder / f"batch-{batch + 1:04d}{suffix}"
        tmp = folder / f".{final.name}.tmp"
        with gzip.open(tmp, "wb") if gzip_batches else tmp.open("wb") as handle:
            for _, line in numbered:
                handle.write(line + b"\n")
                lines += 1
        tmp.rename(final)
        files.append(final)
    return SampleDay(day, files, lines)

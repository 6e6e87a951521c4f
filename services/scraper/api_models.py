"""What a 2ch JSON API response must look like (pydantic), and the parsing of one.

The API is loose about types: in full threads `num` is an int and `parent` a string, in catalogs
both are strings, in the newer API both are ints. Numbers are accepted as ints or strings of
digits and nothing else (no floats, no booleans). A listing entry or a post that does not fit is
skipped and counted; a thread whose envelope does not fit (no posts, wrong types, an opening post
that is not the thread asked for) is rejected as a whole with `MalformedResponse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

# Real 2ch posts are at most 15,000 characters; anything far bigger is not a post.
MAX_COMMENT_CHARS = 100_000
# Threads stop at a bump limit of a few thousand posts; more is not a thread.
MAX_POSTS_PER_THREAD = 20_000
_DIGITS = re.compile(r"^[0-9]{1,18}$")


class MalformedResponse(ValueError):
    """A response that parsed as JSON but is not what the endpoint returns."""


def _number(value: Any) -> int:
    # bool is an int subclass: `true` is not a post number.
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return int(value.strip())
    raise ValueError("an integer or a string of digits")


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        # JSON may carry lone surrogates (not encodable as UTF-8) and NUL (not storable in Postgres).
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return value


Number = Annotated[int, BeforeValidator(_number), Field(ge=0, lt=2**63)]
PostNumber = Annotated[int, BeforeValidator(_number), Field(ge=1, lt=2**63)]
Text = Annotated[str, BeforeValidator(_text)]


class ApiPost(BaseModel):
    """One post of a thread (`threads[0].posts[i]` of `/{board}/res/{num}.json`)."""

    model_config = ConfigDict(extra="ignore", strict=False)

    num: PostNumber
    parent: Number = 0  # the thread's number; 0 for the opening post
    comment: Annotated[Text, Field(max_length=MAX_COMMENT_CHARS)] = ""
    subject: Annotated[Text, Field(max_length=10_000)] = ""
    timestamp: Number | None = None


class ListingThread(BaseModel):
    """One thread as a board's listing shows it (`catalog.json` or `threads.json`)."""

    model_config = ConfigDict(extra="ignore")

    num: PostNumber
    posts_count: Number = 0
    lasthit: Number | None = None
    subject: Annotated[Text, Field(max_length=10_000)] = ""


class _Listing(BaseModel):
    threads: list[Any]


class _ThreadEntry(BaseModel):
    posts: Annotated[list[Any], Field(min_length=1, max_length=MAX_POSTS_PER_THREAD)]


class _ThreadPage(BaseModel):
    threads: Annotated[list[_ThreadEntry], Field(min_length=1)]


@dataclass
class ParsedListing:
    threads: list[ListingThread]
    rejected: int = 0


@dataclass
class ParsedThread:
    board: str
    num: int
    subject: str
    posts: list[ApiPost]
    rejected: list[str] = field(default_factory=list)  # why each skipped post was skipped


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}"


def parse_listing(data: Any) -> ParsedListing:
    """Threads of a board listing; entries that do not fit are skipped and counted."""
    try:
        listing = _Listing.model_validate(data)
    except ValidationError as error:
        raise MalformedResponse(f"not a board listing: {_first_error(error)}") from None
    parsed = ParsedListing(threads=[])
    seen: set[int] = set()
    for entry in listing.threads:
        try:
            thread = ListingThread.model_validate(entry)
        except ValidationError:
            parsed.rejected += 1
            continue
        if thread.num not in seen:
            seen.add(thread.num)
            parsed.threads.append(thread)
    return parsed


def parse_thread(data: Any, board: str, num: int) -> ParsedThread:
    """The posts of thread `num`; posts that do not fit are skipped, with the reason kept."""
    try:
        page = _ThreadPage.model_validate(data)
    except ValidationError as error:
        raise MalformedResponse(f"not a thread: {_first_error(error)}") from None
    posts: list[ApiPost] = []
    rejected: list[str] = []
    seen: set[int] = set()
    for index, entry in enumerate(page.threads[0].posts):
        try:
            post = ApiPost.model_validate(entry)
        except ValidationError as error:
            rejected.append(f"post #{index}: {_first_error(error)}")
            continue
        if post.num in seen:
            rejected.append(f"post #{index}: duplicate num {post.num}")
            continue
        seen.add(post.num)
        posts.append(post)
    if not posts or posts[0].num != num:
        opening = posts[0].num if posts else None
        raise MalformedResponse(f"thread {num} opens with post {opening}")
    return ParsedThread(board=board, num=num, subject=posts[0].subject, posts=posts, rejected=rejected)

"""Post HTML -> plain text, plus the posts it replies to.

2ch marks a reply as `<a class="post-reply-link" data-thread="T" data-num="N">&gt;&gt;N</a>`
(with " (OP)" or " →" after the number for the opening post or another thread). Those links are
removed from the text and kept, in order and without repeats, as the post's parents. Quotes
(`<span class="unkfunc">&gt;...</span>`) stay as `>text` (or go, with `drop_quotes`), spoilers and
emphasis keep their text, external links go, entities are decoded, line breaks and every other
run of whitespace become one space (the seed's shape). The output is text only: no markup of the
input can survive, and the content of scripts, styles and the like is dropped, not shown.

A post is unusable as a dialog turn when nothing is left (a picture, a bare link) or when all it
says is "bump" or "sage"; it is still stored, so that replies to it resolve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

from shared.prompt import clean_turn

# Elements whose content is never text of the post (and may be hostile).
_DROP_WITH_CONTENT = (
    "script, style, noscript, template, iframe, frame, frameset, object, embed, applet, svg, math, "
    "textarea, select, button, input, audio, video, canvas, img, picture, head, title, meta, link"
)
_BLOCKS = "p, div, li, ul, ol, blockquote, pre, h1, h2, h3, h4, h5, h6, tr, table, hr, dd, dt"
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_HREF_NUM = re.compile(r"#([0-9]{1,18})$")
_TEXT_NUM = re.compile(r">>\s*([0-9]{1,18})")
# `>>123` left as plain text: a link 2ch did not make (a mistyped or deleted post).
_PLAIN_REPLY = re.compile(r">>\s*[0-9]+(?:\s*\((?:OP|ОП)\))?(?:\s*→)?", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_LOOKS_LIKE_URL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:/?/?|www\.)\S*\s*$|^\s*\S+\.[a-z]{2,}/\S*\s*$", re.IGNORECASE)
# Control characters, zero-width and direction marks: invisible, and a way to dodge filters.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")

_BUMP_WORD = re.compile(r"^(?:б[ауы]мп\w*|bump\w*|ап+|up+|апну|апаю|поднима\w*|подниму)$")
_SAGE_WORD = re.compile(r"^(?:саж[аеиуё]\w*|сагэ|sage\w*)$")
# Words that come with a bump or a sage without adding anything ("бамп годному треду").
_FILLER = {
    "в",
    "во",
    "на",
    "тебе",
    "вам",
    "за",
    "щеку",
    "щёку",
    "щи",
    "тред",
    "треду",
    "треда",
    "этот",
    "этому",
    "годный",
    "годному",
    "годноты",
    "годнота",
    "годноте",
    "пока",
    "ещё",
    "еще",
    "и",
    "а",
    "thread",
}
# A post answering dozens of posts is a roll call, not a reply; keep the first few links.
MAX_PARENTS = 32


@dataclass(frozen=True)
class CleanPost:
    text: str
    parents: tuple[int, ...]  # reply-link targets, in the order they appear, without repeats
    usable: bool
    reason: str | None = None  # why it is unusable: "empty", "bump" or "sage"


def _link_target(anchor) -> int | None:
    attrs = anchor.attributes
    num = (attrs.get("data-num") or "").strip()
    if _DIGITS.match(num):
        return int(num)
    match = _HREF_NUM.search((attrs.get("href") or "").strip())
    if match:
        return int(match.group(1))
    match = _TEXT_NUM.search(anchor.text() or "")
    return int(match.group(1)) if match else None


def _is_reply_link(anchor) -> bool:
    attrs = anchor.attributes
    return "post-reply-link" in (attrs.get("class") or "").split() or "data-num" in attrs


def unusable_reason(text: str) -> str | None:
    """Why a cleaned text makes no dialog turn ("empty", "bump", "sage"), or None when it does."""
    if not text:
        return "empty"
    words = _WORD.findall(text.lower())
    if not words:
        return None  # ")))" or "?" is a reply on 2ch
    bumps = sum(1 for word in words if _BUMP_WORD.match(word))
    sages = sum(1 for word in words if _SAGE_WORD.match(word))
    fillers = sum(1 for word in words if word in _FILLER)
    if bumps + sages and bumps + sages + fillers == len(words):
        return "bump" if bumps else "sage"
    return None


def clean_comment(html: str, *, drop_quotes: bool = False) -> CleanPost:
    """Plain text and reply links of one post's `comment` HTML."""
    body = LexborHTMLParser(html or "").body
    if body is None:
        return CleanPost("", (), False, "empty")
    # Removed elements leave a space: words on either side must not glue together.
    for node in body.css(_DROP_WITH_CONTENT):
        node.replace_with(" ")

    parents: list[int] = []
    for anchor in body.css("a"):
        if _is_reply_link(anchor):
            target = _link_target(anchor)
            if target is not None and target not in parents and len(parents) < MAX_PARENTS:
                parents.append(target)
            anchor.replace_with(" ")
        elif _LOOKS_LIKE_URL.match(anchor.text() or ""):
            anchor.replace_with(" ")
        else:
            anchor.unwrap()  # a link with words for text: keep the words
    if drop_quotes:
        for quote in body.css("span.unkfunc"):
            quote.replace_with(" ")
    for br in body.css("br"):
        br.replace_with("\n")
    for block in body.css(_BLOCKS):
        block.insert_after("\n")

    text = body.text(deep=True)
    text = _INVISIBLE.sub("", text)
    text = _PLAIN_REPLY.sub(" ", text)
    text = _URL.sub(" ", text)
    text = clean_turn(_SPACE.sub(" ", text))  # no speaker markers or special-token strings in training text
    reason = unusable_reason(text)
    return CleanPost(text=text, parents=tuple(parents), usable=reason is None, reason=reason)

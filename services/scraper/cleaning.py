"""Post HTML -> plain text, plus the posts it replies to.

2ch marks a reply as `<a class="post-reply-link" data-thread="T" data-num="N">&gt;&gt;N</a>`
(with " (OP)" or " →" after the number for the opening post or another thread). Those links are
removed from the text and kept, in order and without repeats, as the post's parents. Quotes
(`<span class="unkfunc">&gt;...</span>`) stay as `>text` (or go, with `drop_quotes`), spoilers and
emphasis keep their text, external links go, entities are decoded, line breaks and every other
run of whitespace become one space (the seed's shape). The output is text only: no markup of the
input can survive, and the content of scripts, styles and the like is dropped, not shown.

Where each link stood says whom the post answers (`Answer`): a link that starts the post or a line
answers, one in a sentence or a numbered list is a mention; a post whose line-start links are each
followed by their own text answers several people in turn, one part each. A plain-text `>>N` (a
link 2ch did not make) goes with the quote marks before it.

A post is unusable as a dialog turn when nothing is left (a picture, a bare link) or when all it
says is "bump" or "sage"; it is still stored, so that replies to it resolve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

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
# `>>123` left as plain text: a link 2ch did not make (a mistyped or deleted post). A quote of
# one (`>>>123`) goes whole: its leading `>` would be left alone otherwise.
_PLAIN_REPLY = re.compile(r">*>>\s*[0-9]+(?:\s*\((?:OP|ОП)\))?(?:\s*→)?", re.IGNORECASE)
# A line left with nothing but quote marks: the quote was a link or a URL, now gone.
_BARE_QUOTE_MARK = re.compile(r"^[ \t]*>[> \t]*$", re.MULTILINE)
# What a part between two reply links may hold and still say nothing (see _answers).
_NOT_SAID = re.compile(r"(?:https?://|ftp://|www\.)\S+|>*>>\s*[0-9]+", re.IGNORECASE)
_SAYS_SOMETHING = re.compile(r"[^\s>]")
# Where a reply link stood in the text, by its index (see clean_comment).
_MARK = re.compile("\x00([0-9]+)\x00")
# An item of a numbered list: "1. ", "2) ".
_LIST_ITEM = re.compile(r"^\s*[0-9]{1,3}[.)](?:\s|$)")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_LOOKS_LIKE_URL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:/?/?|www\.)\S*\s*$|^\s*\S+\.[a-z]{2,}/\S*\s*$", re.IGNORECASE)
# Control characters, zero-width and direction marks: invisible, and a way to dodge filters.
_INVISIBLE = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
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
MAX_ANSWERS = 32


@dataclass(frozen=True)
class Answer:
    """A part of a post and the posts it answers.

    `to`: the reply links that open the part, in order, without repeats; the first of them that
    points to an earlier post of the same thread is the part's parent. `text`: what the part says.
    A post that answers several people in turn (`>>1 text for 1 >>2 text for 2`, each link
    starting a line) has one answer per part; any other post with a reply link at the start of a
    line has one answer, its whole text.
    """

    to: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class CleanPost:
    text: str
    parents: tuple[int, ...]  # reply-link targets, in the order they appear, without repeats
    usable: bool
    reason: str | None = None  # why it is unusable: "empty", "bump" or "sage"
    answers: tuple[Answer, ...] = ()  # whom it answers and with what; empty when it answers no one


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


def _inside_list_item(node: LexborNode) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag == "li":
            return True
        parent = parent.parent
    return False


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


def _link_kinds(lines: list[str], in_list: list[bool]) -> list[tuple[int, str]]:
    """(link index, where it stands) for every link marker of `lines`, in order: "start" when only
    blanks, quote marks or other links come before it on its line, "list" when its line is an item
    of a numbered list (or an `<li>`), "inline" otherwise."""
    kinds = []
    for line in lines:
        if "\x00" not in line:
            continue
        bare = _MARK.sub(" ", line)
        numbered = bool(_LIST_ITEM.match(bare))
        for match in _MARK.finditer(line):
            index = int(match.group(1))
            before = _MARK.sub(" ", line[: match.start()])
            if in_list[index] or numbered:
                kinds.append((index, "list"))
            elif not before.replace(">", " ").strip():
                kinds.append((index, "start"))
            else:
                kinds.append((index, "inline"))
    return kinds


def _finish(text: str) -> str:
    """Marked-up text (link markers, line breaks) -> the text of a turn."""
    text = _MARK.sub(" ", text)
    text = _PLAIN_REPLY.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _BARE_QUOTE_MARK.sub("", text)  # a `>` whose quote was only a link or a URL
    return clean_turn(_SPACE.sub(" ", text))  # no speaker markers or special-token strings in training text


def _parts(marked: str, kinds: dict[int, str]) -> list[tuple[list[int], str]]:
    """A post cut before each run of line-start links with nothing said between them: (the run's
    link indexes, the text up to the next run). The text before the first run is left out."""
    parts: list[tuple[list[int], list[str]]] = []
    for piece_index, piece in enumerate(_MARK.split(marked)):
        if piece_index % 2 == 0:  # text
            if parts:
                parts[-1][1].append(piece)
        elif kinds[int(piece)] != "start":  # a mention: a space where it stood
            if parts:
                parts[-1][1].append(" ")
        elif parts and not _SAYS_SOMETHING.search(_NOT_SAID.sub("", "".join(parts[-1][1]))):
            parts[-1][0].append(int(piece))  # ">>1 >>2 text": one part answering both
        else:
            parts.append(([int(piece)], []))
    return [(indexes, _finish("".join(chunks))) for indexes, chunks in parts]


def _answers(marked: str, targets: list[int | None], in_list: list[bool], full_text: str) -> tuple[Answer, ...]:
    """Whom the post answers, and with which part of its text (see `Answer`)."""
    if not targets:
        return ()
    kinds = dict(_link_kinds(marked.split("\n"), in_list))

    def kept(indexes: list[int]) -> tuple[int, ...]:
        return tuple(dict.fromkeys(t for i in indexes if (t := targets[i]) is not None))

    starts = [i for i, kind in kinds.items() if kind == "start"]
    if not starts:
        # Links in sentences or lists only ("как тот >>N", "1. Чухонцами >>N"): mentions, not
        # replies. 2ch's reply button puts the link at the start of a line.
        return ()
    if len(starts) == 1:  # most replies: one link, the whole text answers it
        to = kept(starts)
        return (Answer(to, full_text),) if to else ()

    said: dict[tuple[int, ...], list[str]] = {}  # parts answering the same posts are one answer
    for indexes, text in _parts(marked, kinds):
        to = kept(indexes)
        if to and unusable_reason(text) is None:
            said.setdefault(to, []).append(text)
    if len(said) >= 2:
        return tuple(Answer(to, " ".join(texts)) for to, texts in list(said.items())[:MAX_ANSWERS])
    to = next(iter(said)) if said else kept(starts)
    return (Answer(to, full_text),) if to else ()


def _take_links(body: LexborNode) -> tuple[list[int], list[int | None], list[bool]]:
    """Replace each reply link of `body` by a marker, drop the URLs; returns the posts linked (in
    order, without repeats), then for each marker its post (None: unreadable or over the cap) and
    whether it stands in a list item."""
    parents: list[int] = []
    targets: list[int | None] = []  # the post each link marker points to (None: unreadable or over the cap)
    in_list: list[bool] = []
    for anchor in body.css("a"):
        if _is_reply_link(anchor):
            target = _link_target(anchor)
            if target is not None and target not in parents:
                if len(parents) >= MAX_PARENTS:
                    target = None
                else:
                    parents.append(target)
            targets.append(target)
            in_list.append(_inside_list_item(anchor))
            # A NUL marks where the link stood: the HTML parser drops every NUL of the input, so
            # none can come from the post itself.
            anchor.replace_with(f"\x00{len(targets) - 1}\x00")
        elif _LOOKS_LIKE_URL.match(anchor.text() or ""):
            anchor.replace_with(" ")
        else:
            anchor.unwrap()  # a link with words for text: keep the words
    return parents, targets, in_list


def clean_comment(html: str, *, drop_quotes: bool = False) -> CleanPost:
    """Plain text, reply links and answers of one post's `comment` HTML."""
    body = LexborHTMLParser(html or "").body
    if body is None:
        return CleanPost("", (), False, "empty")
    # Removed elements leave a space: words on either side must not glue together.
    for node in body.css(_DROP_WITH_CONTENT):
        node.replace_with(" ")

    parents, targets, in_list = _take_links(body)
    if drop_quotes:
        for quote in body.css("span.unkfunc"):
            quote.replace_with(" ")
    for br in body.css("br"):
        br.replace_with("\n")
    for block in body.css(_BLOCKS):
        block.insert_after("\n")

    marked = _INVISIBLE.sub("", body.text(deep=True))
    text = _finish(marked)
    reason = unusable_reason(text)
    return CleanPost(
        text=text,
        parents=tuple(parents),
        usable=reason is None,
        reason=reason,
        answers=_answers(marked, targets, in_list, text),
    )

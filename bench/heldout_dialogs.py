"""A held-out set of Russian group-chat dialogs, written for the reranker's evaluation.

    python -m bench.heldout_dialogs [--count 200] [--seed 18] > dialogs.jsonl

Not the training corpus (services/inference_worker/demo_model/corpus.py) and not scraped data:
the phrases below were written for this file, and `heldout()` drops any dialog that shares a
turn with the demo corpus. Dialogs come in chats of ten consecutive messages (the reranker's
"recent replies" are per chat), each one to three turns long (newest first, the project's order),
with a length bucket to ask for ("1" short, "2" medium, "3" long). About a third end in a chat
reaction (`REACTIONS`): the board's stock phrases inside a message, which is where a small 2ch
model copies its prompt.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass

TOPICS = {
    "еда": ["пельмени", "шаурма", "борщ", "доширак", "пицца с ананасами", "гречка", "окрошка на квасе"],
    "работа": ["начальник", "удалёнка", "зарплата", "собеседование", "отпуск", "переработки", "офис"],
    "игры": ["новая часть сталкера", "доту", "майнкрафт", "танки", "консоль", "ретро игры", "шахматы"],
    "погода": ["дождь", "жара", "снег в апреле", "гололёд", "туман", "ветер", "слякоть"],
    "животные": ["кот", "собака", "попугай", "хомяк", "ёж", "голуби", "рыбки"],
    "учёба": ["сессия", "диплом", "матан", "общага", "препод", "курсовая", "экзамен по физике"],
    "музыка": ["рок", "рэп", "шансон", "гитара", "концерт", "наушники", "винил"],
    "кино": ["сериал", "аниме", "боевик", "ужастик", "мультфильм", "кинотеатр", "спойлеры"],
    "транспорт": ["метро", "электричка", "самокат", "пробки", "маршрутка", "велосипед", "такси"],
    "техника": ["телефон", "ноутбук", "видеокарта", "роутер", "принтер", "зарядка", "клавиатура"],
}
OPENERS = [
    "анон, что думаешь про {x}?",
    "кто-нибудь шарит за {x}?",
    "{x} это вообще нормально?",
    "опять {x}, сколько можно",
    "посоветуйте что-нибудь про {x}",
    "у меня {x} сломалось, что делать",
    "как вы относитесь к {x}",
    "расскажите смешную историю про {x}",
    "внезапно понял что люблю {x}",
    "почему все так носятся с {x}?",
]
MIDDLES = [
    "да норм вроде, у меня так же",
    "ну не знаю, по мне так переоценено",
    "было дело, до сих пор вспоминаю",
    "ты серьёзно сейчас?",
    "а в чём проблема-то",
    "у меня сосед тоже этим увлекается",
    "лучше бы делом занялся",
    "ничего не понял, объясни нормально",
]
FOLLOWUPS = [
    "ну и что мне теперь с этим делать",
    "вот и я о том же",
    "а если подумать?",
    "так и знал что тут никто не поможет",
    "ладно, а ты сам как",
    "и всё-таки, почему",
]
# Chat reactions: the board's stock phrases as people write them into a message of their own
# (none of them is a turn of the demo corpus). A small 2ch model says these phrases itself, so
# this is where it echoes a message (measured: docs/inference.md).
REACTIONS = [
    "сильное заявление, анон",
    "вот это поворот, конечно",
    "в рамочку и на стену такое",
    "зато честно, что уж там",
    "это ты зря, анон",
    "ну такое, если честно",
    "жиза, у меня так же было",
    "сохранил в цитатник, спасибо",
    "держи в курсе, мне интересно",
    "иди работай, анон",
    "пруфы или не было, как говорится",
    "а мне нравится, кстати",
    "с тобой не поспоришь, анон",
    "база, двачую",
]
REACTION_SHARE = 0.3  # of dialogs whose newest turn is a reaction
BUCKETS = ("1", "2", "3")


@dataclass
class HeldOutDialog:
    chat: int
    dialog: list[str]  # newest first
    length: str


def heldout(count: int = 200, seed: int = 18, per_chat: int = 10) -> list[HeldOutDialog]:
    from services.inference_worker.demo_model.corpus import demo_dialogs

    training_turns = {turn for dialog in demo_dialogs() for turn in dialog}
    rng = random.Random(seed)
    out: list[HeldOutDialog] = []
    while len(out) < count:
        topic = rng.choice(list(TOPICS))
        opener = rng.choice(OPENERS).format(x=rng.choice(TOPICS[topic]))
        turns = [opener]  # reading order, oldest first
        if rng.random() < 0.6:
            turns.append(rng.choice(MIDDLES))
            if rng.random() < 0.5:
                turns.append(rng.choice(FOLLOWUPS))
        if rng.random() < REACTION_SHARE:
            turns.append(rng.choice(REACTIONS))
        if any(turn in training_turns for turn in turns):
            continue
        out.append(HeldOutDialog(len(out) // per_chat, list(reversed(turns)), rng.choice(BUCKETS)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    for item in heldout(args.count, args.seed):
        print(json.dumps(asdict(item), ensure_ascii=False))


if __name__ == "__main__":
    main()

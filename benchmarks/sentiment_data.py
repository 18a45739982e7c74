"""A small labeled sentiment set written for the benchmark suite (no download): template sentences to
finetune MiniLM on, and hand-written held-out sentences of other wording to measure accuracy and build the
128-token benchmark input from."""
from __future__ import annotations

import itertools

SUBJECTS = ["the film", "the service", "this book", "the hotel room", "the meal", "the concert", "the new phone",
            "the customer support", "the game", "the lecture", "our holiday", "the coffee", "the museum tour",
            "the app", "the train journey", "the play"]
POSITIVE = ["wonderful", "excellent", "delightful", "superb", "fantastic", "charming", "brilliant", "lovely",
            "outstanding", "great", "impressive", "a real pleasure"]
NEGATIVE = ["terrible", "awful", "dreadful", "boring", "disappointing", "horrible", "tedious", "poor", "bland",
            "miserable", "a total letdown", "frustrating"]
POSITIVE_FRAMES = ["{s} was {a}.", "Honestly, {s} was {a} and I would go again.", "I thought {s} was {a}.",
                   "{S} turned out to be {a}, highly recommended.", "Everyone agreed that {s} was {a}."]
NEGATIVE_FRAMES = ["{s} was {a}.", "Honestly, {s} was {a} and I would not go again.", "I thought {s} was {a}.",
                   "{S} turned out to be {a}, avoid it.", "Everyone agreed that {s} was {a}."]

HELDOUT = [
    ("The staff went out of their way to help us, and the view from the balcony was breathtaking.", "positive"),
    ("I laughed from the opening scene to the final credits.", "positive"),
    ("Fresh ingredients, generous portions and a friendly waiter made our evening.", "positive"),
    ("The battery easily lasts two days and the screen is gorgeous.", "positive"),
    ("She explained the hardest ideas so clearly that the whole class followed along.", "positive"),
    ("A moving story, beautifully told, with a cast that shines in every scene.", "positive"),
    ("Setup took two minutes and everything worked perfectly the first time.", "positive"),
    ("The band played every song we hoped for and the crowd sang along all night.", "positive"),
    ("Our guide was funny, patient and full of fascinating stories.", "positive"),
    ("The pastries were warm, flaky and gone within minutes.", "positive"),
    ("I finished the novel in one sitting because I could not put it down.", "positive"),
    ("The train was quiet, clean and arrived exactly on time.", "positive"),
    ("Support replied within an hour and solved my problem at once.", "positive"),
    ("It is the most relaxing weekend we have had in years.", "positive"),
    ("The puzzles are clever and the soundtrack is a joy.", "positive"),
    ("Every dish surprised us in the best possible way.", "positive"),
    ("Clear instructions, sturdy parts and a result that looks amazing.", "positive"),
    ("I would gladly pay twice the price for an evening like that.", "positive"),
    ("The actors had real chemistry and the dialogue sparkled.", "positive"),
    ("A thoughtful gift that my whole family now uses every day.", "positive"),
    ("We waited forty minutes for cold soup and nobody apologised.", "negative"),
    ("The plot falls apart halfway through and the ending makes no sense.", "negative"),
    ("The room smelled of smoke and the shower never got warm.", "negative"),
    ("It crashed three times before I could even log in.", "negative"),
    ("The speaker mumbled through his slides and ran an hour over.", "negative"),
    ("I want my money back, this was a waste of an evening.", "negative"),
    ("The charger stopped working after a week and support ignored my emails.", "negative"),
    ("The sound was so muddy that we could not hear the vocals.", "negative"),
    ("Our train was cancelled without notice and the replacement bus broke down.", "negative"),
    ("The characters are flat and the jokes fall painfully short.", "negative"),
    ("Overpriced, undercooked and served by a rude waiter.", "negative"),
    ("The instructions were missing pages and half the screws did not fit.", "negative"),
    ("I fell asleep twice during the second act.", "negative"),
    ("The exhibits were dusty and half of the rooms were closed.", "negative"),
    ("After the update the app drains my battery and freezes constantly.", "negative"),
    ("The coffee tasted burnt and the cup was only half full.", "negative"),
    ("Nothing about this trip went the way the brochure promised.", "negative"),
    ("The levels are repetitive and the controls feel sluggish.", "negative"),
    ("A dull, lifeless book that I abandoned after three chapters.", "negative"),
    ("The hotel lost our booking and offered no help at all.", "negative"),
]


def training_set() -> tuple[list[str], list[str]]:
    """(texts, labels): every subject with every frame, adjectives taken in turn (~160 sentences)."""
    texts, labels = [], []
    for label, frames, adjectives in (("positive", POSITIVE_FRAMES, POSITIVE), ("negative", NEGATIVE_FRAMES, NEGATIVE)):
        adj = itertools.cycle(adjectives)
        for subject, frame in itertools.product(SUBJECTS, frames):
            text = frame.format(s=subject, S=subject[0].upper() + subject[1:], a=next(adj))
            texts.append(text[0].upper() + text[1:])
            labels.append(label)
    return texts, labels


def heldout_set() -> tuple[list[str], list[str]]:
    texts, labels = zip(*HELDOUT)
    return list(texts), list(labels)

"""Understanding the question: Bloom's level, subject, concepts, knowledge and game template."""

import logging
import re

from pipeline.graphs.faults import stage
from pipeline.graphs.gamed.answers import DomainKnowledge
from pipeline.graphs.gamed.knowledge import TOPICS
from pipeline.graphs.gamed.llm import ask

logger = logging.getLogger(__name__)

BLOOM_VERBS = [
    ("create", ["design", "create", "invent", "compose", "build"]),
    ("evaluate", ["evaluate", "judge", "justify", "assess", "argue"]),
    ("analyze", ["compare", "contrast", "sort", "classify", "categorise", "categorize", "group"]),
    ("apply", ["order", "arrange", "sequence", "put", "solve", "use", "trace"]),
    ("understand", ["explain", "describe", "summarise", "summarize", "why", "how"]),
    ("remember", ["label", "name", "identify", "list", "recall", "which", "what"]),
]
STOPWORDS = set(
    "a an the of in on to and or for with from by into onto at as is are be what which how why "
    "label name identify list order arrange sort put their its these those this that parts part "
    "main each explain describe classify group compare steps stages".split()
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z][a-z\-']*", text.lower())


def match_topic(question: str) -> tuple[str | None, int]:
    text = question.lower()
    tokens = set(words(question))
    best, best_score = None, 0
    for key, topic in TOPICS.items():
        score = sum(1 for kw in topic["keywords"] if (kw in text if " " in kw else kw in tokens))
        if score > best_score:
            best, best_score = key, score
    return best, best_score


@stage
def input_enhancer(state: dict) -> dict:
    """Bloom's level, subject and key concepts from the question."""
    question = state["question"]
    tokens = words(question)
    bloom = "remember"
    for level, verbs in BLOOM_VERBS:
        if any(verb in tokens for verb in verbs):
            bloom = level
            break
    concepts = list(dict.fromkeys(t for t in tokens if t not in STOPWORDS and len(t) > 2))
    topic, _ = match_topic(question)
    subject = TOPICS[topic]["subject"] if topic else "general knowledge"
    difficulty = {"remember": "easy", "understand": "easy", "apply": "medium"}.get(bloom, "hard")
    logger.info("Bloom level %s, subject %s", bloom, subject, extra={"concepts": concepts[:8]})
    return {
        "enhanced": {
            "bloom_level": bloom,
            "subject": subject,
            "key_concepts": concepts[:8],
            "difficulty": difficulty,
        }
    }


KNOWLEDGE_INSTRUCTIONS = (
    "You write the subject knowledge for an educational game about a learner's question. "
    "Fill only the fields that fit the question: parts (for a diagram to label), sequence "
    "(steps to put in order), categories (items to sort) or facts (for a quiz). Give between "
    "4 and 8 entries, short and correct, at the level of a school textbook."
)


@stage
def domain_knowledge_retriever(state: dict) -> dict:
    """Canonical terms for the question: the bundled knowledge base, else the chat model."""
    topic_key, score = match_topic(state["question"])
    if topic_key is None:
        logger.info("No bundled topic matches the question; asking the chat model")
        concepts = state["enhanced"]["key_concepts"]
        answer = ask(
            DomainKnowledge,
            KNOWLEDGE_INSTRUCTIONS,
            {"question": state["question"], "key_concepts": concepts},
        )
        knowledge = {
            "topic": None,
            "title": answer.title,
            "source": "model",
            "match_score": 0,
            "terms": concepts,
            "question": state["question"],
        }
        if answer.parts:
            knowledge["parts"] = answer.parts
        if answer.sequence:
            knowledge["sequence"] = answer.sequence
        if answer.categories:
            knowledge["categories"] = answer.categories
        if answer.facts:
            knowledge["facts"] = [[fact.question, fact.answer] for fact in answer.facts]
        return {"domain_knowledge": knowledge}
    topic = TOPICS[topic_key]
    knowledge = {
        "topic": topic_key,
        "title": topic["title"],
        "source": f"bundled:{topic_key}",
        "match_score": score,
        "terms": list(topic.get("parts", {}))
        or topic.get("sequence", [])
        or [item for items in topic.get("categories", {}).values() for item in items],
    }
    for field in ("parts", "sequence", "categories"):
        if field in topic:
            knowledge[field] = topic[field]
    if "facts" in topic:
        knowledge["facts"] = [list(fact) for fact in topic["facts"]]
    return {"domain_knowledge": knowledge}


CUES = {
    "label_diagram": ["label", "parts", "diagram", "identify", "name"],
    "sequencing": ["order", "sequence", "steps", "stages", "arrange", "cycle", "phases", "trace"],
    "sorting": ["sort", "classify", "categorise", "categorize", "group"],
    "multiple_choice": ["which", "what", "who", "quiz", "test", "explain"],
}
NEEDS = {
    "label_diagram": "parts",
    "sequencing": "sequence",
    "sorting": "categories",
    "multiple_choice": "facts",
}


@stage
def router(state: dict) -> dict:
    """Pick the game template that fits the question and the knowledge, with a confidence."""
    tokens = set(words(state["question"]))
    knowledge = state["domain_knowledge"]
    scored = []
    for template, cues in CUES.items():
        cue_hits = sum(1 for cue in cues if cue in tokens)
        supported = NEEDS[template] in knowledge
        if supported:
            scored.append((cue_hits, template))
    scored.sort(key=lambda pair: (-pair[0], list(CUES).index(pair[1])))
    if scored and scored[0][0] > 0:
        hits, template = scored[0]
        confidence = min(0.98, 0.75 + 0.1 * hits)
        reason = f"question asks to {template.replace('_', ' ')} and the knowledge base supports it"
    elif scored:
        template = scored[0][1]
        confidence = 0.6
        reason = "no explicit cue; chose what the knowledge base supports"
    else:
        template = "multiple_choice"
        confidence = 0.8 if knowledge.get("facts") else 0.45
        reason = "no structure to drag or order; a quiz fits best"
    logger.info("Chose %s (confidence %.2f): %s", template, confidence, reason)
    return {"route": {"template": template, "confidence": round(confidence, 2), "reason": reason}}

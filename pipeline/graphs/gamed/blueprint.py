"""Assembling, validating and rendering the game blueprint."""

import hashlib
import json
import logging

from langgraph.types import interrupt

from pipeline.graphs.faults import stage
from pipeline.graphs.gamed.answers import DRAFTS
from pipeline.graphs.gamed.llm import ask
from pipeline.graphs.gamed.state import MAX_ITEMS, TEMPLATES

logger = logging.getLogger(__name__)


class BlueprintInvalid(RuntimeError):
    """The validator still rejects the blueprint after the allowed attempts."""


DRAFT_INSTRUCTIONS = (
    "You write the content of an educational game. The task gives the game's template, its "
    "learning objective and the subject knowledge to draw on; stay within that knowledge. "
    "Write at most max_items items, each distinct. A diagram game has one label per part, in "
    "the order the parts are given; a quiz question has four options with its answer among "
    "them. When the task lists feedback, your previous draft was rejected for those reasons: "
    "fix every one."
)


def _task(state: dict, feedback: list[str]) -> dict:
    plan = state["game_plan"]
    knowledge = state["domain_knowledge"]
    given = {
        field: knowledge[field]
        for field in ("parts", "sequence", "categories", "terms")
        if knowledge.get(field)
    }
    if knowledge.get("facts"):
        given["facts"] = [{"question": q, "answer": a} for q, a in knowledge["facts"]]
    return {
        "question": state["question"],
        "template": plan["template"],
        "title": plan["title"],
        "learning_objective": plan["learning_objective"],
        "max_items": MAX_ITEMS,
        "knowledge": given,
        "feedback": feedback,
    }


def _items(template: str, draft) -> list[dict]:
    """The model's draft as the blueprint's items: ids, hotspots and positions are ours."""
    if template == "label_diagram":
        return [
            {
                "id": f"label-{i + 1}",
                "label": item.label,
                "hint": item.hint,
                "target": f"hotspot-{i + 1}",
            }
            for i, item in enumerate(draft.labels)
        ]
    if template == "sequencing":
        return [
            {"id": f"step-{i + 1}", "text": step, "position": i + 1}
            for i, step in enumerate(draft.steps)
        ]
    if template == "sorting":
        return [
            {"id": f"item-{i + 1}", "text": item.text, "bin": item.bin}
            for i, item in enumerate(draft.items)
        ]
    return [
        {"id": f"q-{i + 1}", "prompt": q.prompt, "options": q.options, "answer": q.answer}
        for i, q in enumerate(draft.questions)
    ]


@stage
def blueprint_generator(state: dict) -> dict:
    """The chat model drafts the game's items; a second draft gets the validator's feedback."""
    plan = state["game_plan"]
    attempt = state.get("blueprint_attempts", 0) + 1
    feedback = (state.get("validation") or {}).get("errors", []) if attempt > 1 else []
    draft = ask(DRAFTS[plan["template"]], DRAFT_INSTRUCTIONS, _task(state, feedback))
    items = _items(plan["template"], draft)
    blueprint = {
        "schema": "gamed.blueprint/1",
        "template": plan["template"],
        "title": plan["title"],
        "learning_objective": plan["learning_objective"],
        "bloom_level": state["enhanced"]["bloom_level"],
        "subject": state["enhanced"]["subject"],
        "mechanics": plan["mechanics"],
        "scoring": plan["scoring"],
        "time_limit_s": plan["time_limit_s"],
        "scenes": state["scenes"],
        "items": items,
        "draft": attempt,
    }
    return {"blueprint": blueprint, "blueprint_attempts": attempt}


REQUIRED = {
    "schema": str,
    "template": str,
    "title": str,
    "items": list,
    "scenes": list,
    "scoring": dict,
}


def validate_blueprint(blueprint: dict) -> list[str]:
    errors = [
        f"missing or mistyped field {field!r}"
        for field, kind in REQUIRED.items()
        if not isinstance(blueprint.get(field), kind)
    ]
    if errors:
        return errors
    items = blueprint["items"]
    if blueprint["template"] not in TEMPLATES:
        errors.append(f"unknown template {blueprint['template']!r}")
    if len(items) < 2:
        errors.append(f"too few items ({len(items)} < 2)")
    if len(items) > MAX_ITEMS:
        errors.append(f"too many items ({len(items)} > {MAX_ITEMS}): a screen cannot hold them")
    texts = [item.get("label") or item.get("text") or item.get("prompt") for item in items]
    if len(set(texts)) != len(texts):
        errors.append("duplicate items")
    if blueprint["template"] == "label_diagram":
        zones = {
            zone["id"]
            for scene in blueprint["scenes"]
            for zone in scene.get("layout", {}).get("zones", [])
        }
        missing = [item["target"] for item in items if item["target"] not in zones]
        if missing:
            errors.append(f"labels point at missing hotspots: {', '.join(missing)}")
    if blueprint["template"] == "multiple_choice":
        bad = [q["id"] for q in items if q["answer"] not in q["options"]]
        if bad:
            errors.append(f"questions without their answer among the options: {', '.join(bad)}")
    return errors


@stage
def blueprint_validator(state: dict) -> dict:
    """Schema and semantic checks; an invalid blueprint goes back to the generator."""
    attempt = state["blueprint_attempts"]
    errors = validate_blueprint(state["blueprint"])
    for error in errors:
        logger.warning("Draft %s rejected: %s", attempt, error)
    if errors and attempt >= state.get("max_blueprint_attempts", 3):
        raise BlueprintInvalid(
            f"blueprint still invalid after {attempt} attempts: {'; '.join(errors)}"
        )
    return {"validation": {"valid": not errors, "errors": errors, "attempt": attempt}}


def after_validation(state: dict) -> str:
    if not state["validation"]["valid"]:
        return "blueprint_generator"
    return "human_review" if state.get("review") else "output_renderer"


class BlueprintRejected(RuntimeError):
    """The operator who reviewed the blueprint rejected it."""


REVIEW_HINT = (
    'Answer "approve" to publish it, "reject" to stop, or {"blueprint": {...}} with an edited '
    "blueprint to publish instead."
)


@stage
def human_review(state: dict) -> dict:
    """With `review` on, an operator approves, edits or rejects the blueprint."""
    blueprint = state["blueprint"]
    answer = interrupt(
        {
            "question": f"Publish the {blueprint['template']} game {blueprint['title']!r}?",
            "choices": ["approve", "reject"],
            "hint": REVIEW_HINT,
            "blueprint": blueprint,
        }
    )
    if answer == "approve":
        return {"review_decision": "approved"}
    if isinstance(answer, dict) and isinstance(answer.get("blueprint"), dict):
        edited = {**blueprint, **answer["blueprint"]}
        if errors := validate_blueprint(edited):
            raise BlueprintRejected(f"the edited blueprint is invalid: {'; '.join(errors)}")
        return {"blueprint": edited, "review_decision": "edited"}
    raise BlueprintRejected(f"the reviewer rejected the blueprint (answer: {answer!r})")


@stage
def output_renderer(state: dict) -> dict:
    """The final, playable blueprint JSON."""
    blueprint = state["blueprint"]
    body = json.dumps(blueprint, sort_keys=True)
    return {
        "output": {
            "game": blueprint,
            "question": state["question"],
            "template": blueprint["template"],
            "items": len(blueprint["items"]),
            "drafts": state["blueprint_attempts"],
            "review": state.get("review_decision", "none"),
            "router_confidence": state["route"]["confidence"],
            "checksum": hashlib.sha256(body.encode()).hexdigest(),
        }
    }

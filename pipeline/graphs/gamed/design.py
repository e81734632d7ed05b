"""Designing the game: mechanics, scoring and the scenes a player moves through."""

import math

from pipeline.graphs.faults import stage

MECHANICS = {
    "label_diagram": ["drag each label onto its hotspot", "hint reveals the part's function"],
    "sequencing": ["drag cards into the right order", "locked cards show confirmed steps"],
    "sorting": ["drag each item into its category bin", "bins glow when complete"],
    "multiple_choice": ["pick one answer of four", "explanation after each answer"],
}
TIME_LIMITS = {"easy": 180, "medium": 240, "hard": 300}


@stage
def game_planner(state: dict) -> dict:
    """Mechanics and scoring rubric for the chosen template."""
    template = state["route"]["template"]
    enhanced = state["enhanced"]
    knowledge = state["domain_knowledge"]
    rubric = {
        "label_diagram": {"correct": 10, "wrong_attempt": -2, "no_hint_bonus": 5},
        "sequencing": {"correct_position": 10, "correct_neighbour_pair": 3},
        "sorting": {"correct_bin": 10, "wrong_bin": -3},
        "multiple_choice": {"correct": 10, "streak_bonus": 2},
    }[template]
    return {
        "game_plan": {
            "template": template,
            "title": f"{knowledge['title']}: {template.replace('_', ' ')}",
            "learning_objective": (
                f"{enhanced['bloom_level'].capitalize()}: {state['question'].rstrip('?.')}"
            ),
            "mechanics": MECHANICS[template],
            "scoring": {"rubric": rubric, "pass_mark_percent": 70},
            "time_limit_s": TIME_LIMITS[enhanced["difficulty"]],
            "hints": enhanced["difficulty"] != "hard",
        }
    }


def _circle(n: int) -> list[dict]:
    """Evenly spaced hotspot positions (percent of the canvas) around the diagram."""
    return [
        {
            "x": round(50 + 38 * math.cos(2 * math.pi * i / n - math.pi / 2), 1),
            "y": round(50 + 38 * math.sin(2 * math.pi * i / n - math.pi / 2), 1),
        }
        for i in range(n)
    ]


@stage
def scene_generator(state: dict) -> dict:
    """Intro, play and results scenes, with the play scene's layout."""
    plan = state["game_plan"]
    knowledge = state["domain_knowledge"]
    template = plan["template"]
    if template == "label_diagram":
        zones = [
            {"id": f"hotspot-{i + 1}", "kind": "hotspot", **pos}
            for i, pos in enumerate(_circle(len(knowledge["parts"])))
        ]
        layout = {"canvas": "diagram", "background": knowledge["topic"], "zones": zones}
    elif template == "sequencing":
        layout = {"canvas": "track", "slots": len(knowledge["sequence"]), "direction": "left-right"}
    elif template == "sorting":
        layout = {"canvas": "bins", "bins": sorted(knowledge["categories"])}
    else:
        layout = {"canvas": "cards", "options_per_question": 4}
    scenes = [
        {"id": "intro", "title": plan["title"], "text": plan["learning_objective"]},
        {"id": "play", "title": "Play", "layout": layout, "time_limit_s": plan["time_limit_s"]},
        {"id": "results", "title": "Results", "shows": ["score", "mistakes", "explanations"]},
    ]
    return {"scenes": scenes}

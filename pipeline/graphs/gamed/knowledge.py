"""A small bundled knowledge base, so the GamED pipeline runs offline and deterministically."""

TOPICS: dict[str, dict] = {
    "plant_cell": {
        "title": "The plant cell",
        "subject": "biology",
        "keywords": ["plant", "cell", "chloroplast", "organelle", "organelles"],
        "parts": {
            "cell wall": "rigid outer layer made of cellulose that gives the cell its shape",
            "cell membrane": "controls what enters and leaves the cell",
            "nucleus": "holds the DNA and controls the cell's activities",
            "chloroplast": "captures light energy for photosynthesis",
            "vacuole": "large sac that stores water and keeps the cell firm",
            "mitochondrion": "releases energy from glucose by respiration",
            "cytoplasm": "jelly-like fluid where the cell's reactions happen",
        },
    },
    "human_skeleton": {
        "title": "The human skeleton",
        "subject": "biology",
        "keywords": ["skeleton", "bones", "bone", "skeletal"],
        "parts": {
            "skull": "protects the brain",
            "clavicle": "collarbone joining the arm to the body",
            "sternum": "breastbone at the front of the chest",
            "ribs": "cage that protects the heart and lungs",
            "humerus": "upper arm bone",
            "radius": "forearm bone on the thumb side",
            "ulna": "forearm bone on the little-finger side",
            "pelvis": "hip bones that support the upper body",
            "femur": "thigh bone, the longest bone in the body",
            "tibia": "shin bone",
        },
    },
    "heart": {
        "title": "The human heart",
        "subject": "biology",
        "keywords": ["heart", "atrium", "ventricle", "circulation", "blood"],
        "parts": {
            "right atrium": "receives blood from the body",
            "right ventricle": "pumps blood to the lungs",
            "left atrium": "receives oxygen-rich blood from the lungs",
            "left ventricle": "pumps oxygen-rich blood to the body",
            "aorta": "largest artery, carries blood to the body",
            "vena cava": "brings blood back from the body",
        },
        "sequence": [
            "vena cava",
            "right atrium",
            "right ventricle",
            "pulmonary artery",
            "pulmonary vein",
            "left atrium",
            "left ventricle",
            "aorta",
        ],
    },
    "water_cycle": {
        "title": "The water cycle",
        "subject": "earth science",
        "keywords": ["water", "cycle", "evaporation", "rain", "precipitation", "condensation"],
        "sequence": ["evaporation", "condensation", "precipitation", "collection"],
        "facts": [
            ("What turns liquid water into water vapour?", "evaporation"),
            ("What forms clouds from water vapour?", "condensation"),
            ("What is rain, snow or hail called?", "precipitation"),
        ],
    },
    "mitosis": {
        "title": "Mitosis",
        "subject": "biology",
        "keywords": ["mitosis", "phases", "cell division", "prophase", "chromosomes"],
        "sequence": ["prophase", "metaphase", "anaphase", "telophase", "cytokinesis"],
    },
    "states_of_matter": {
        "title": "States of matter",
        "subject": "chemistry",
        "keywords": ["solid", "solids", "liquid", "liquids", "gas", "gases", "matter", "states"],
        "categories": {
            "solid": ["ice", "rock", "wood", "iron nail"],
            "liquid": ["water", "milk", "olive oil", "juice"],
            "gas": ["steam", "oxygen", "helium", "carbon dioxide"],
        },
    },
    "animal_classes": {
        "title": "Classes of vertebrates",
        "subject": "biology",
        "keywords": ["animals", "animal", "vertebrates", "mammals", "birds", "reptiles", "fish"],
        "categories": {
            "mammal": ["dolphin", "bat", "elephant"],
            "bird": ["penguin", "eagle", "ostrich"],
            "reptile": ["crocodile", "gecko", "tortoise"],
            "fish": ["salmon", "shark", "seahorse"],
        },
    },
    "solar_system": {
        "title": "The solar system",
        "subject": "astronomy",
        "keywords": ["planets", "planet", "solar", "sun", "orbit"],
        "sequence": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
        "facts": [
            ("Which planet is closest to the Sun?", "Mercury"),
            ("Which planet is the largest?", "Jupiter"),
            ("Which planet is known for its rings?", "Saturn"),
            ("Which planet is called the red planet?", "Mars"),
        ],
    },
    "photosynthesis": {
        "title": "Photosynthesis",
        "subject": "biology",
        "keywords": ["photosynthesis", "glucose", "sunlight", "leaf", "leaves"],
        "facts": [
            ("Which gas do plants take in for photosynthesis?", "carbon dioxide"),
            ("Which gas do plants release during photosynthesis?", "oxygen"),
            ("Where in the cell does photosynthesis happen?", "chloroplast"),
            ("What sugar does photosynthesis make?", "glucose"),
        ],
    },
}

DISTRACTORS = ["nitrogen", "Pluto", "ribosome", "erosion", "calcium", "Venus", "melting"]

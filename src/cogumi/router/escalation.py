"""The dissatisfaction detector in use: is a user's follow-up turn a complaint about the last answer?"""

import json
from pathlib import Path

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ArtifactError
from cogumi.router.embedding import shared_encoder
from cogumi.router.heads import Head
from cogumi.router.model import artifact_folder, check_encoder, encoder_settings

SPEC_FILE = "escalation.json"


class EscalationDetector:
    def __init__(self, folder: Path, spec: dict, encoder_dir: str | None = None):
        self.folder = folder
        self.threshold = float(spec["threshold"])
        self.head = Head.load(folder / spec["head"])
        self.encoder = shared_encoder(encoder_dir, *encoder_settings(spec))

    def score(self, text: str) -> float:
        """P(the turn expresses dissatisfaction)."""
        return float(self.head.probabilities(self.encoder.encode([text]))[0, 1])

    def is_dissatisfied(self, text: str) -> bool:
        return self.score(text) >= self.threshold


def load_escalation(ref_or_path="latest:escalation", store: ArtifactStore | None = None,
                    encoder_dir: str | None = None) -> EscalationDetector:
    folder = artifact_folder(ref_or_path, store, "escalation")
    if not (folder / SPEC_FILE).is_file():
        raise ArtifactError(f"{folder}: not an escalation artifact (no {SPEC_FILE})")
    spec = json.loads((folder / SPEC_FILE).read_text())
    check_encoder(spec, folder, encoder_dir)
    return EscalationDetector(folder, spec, encoder_dir)

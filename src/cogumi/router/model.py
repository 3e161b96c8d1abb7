"""A trained router artifact in use: domain classifier + confidence calibrator + policy, loaded once."""

import json
from pathlib import Path

import numpy as np

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ArtifactError
from cogumi.hashing import sha256_file
from cogumi.paths import outputs_dir
from cogumi.router import policy
from cogumi.router.confidence import Calibrator
from cogumi.router.embedding import encoder_identity, shared_encoder
from cogumi.router.heads import Head
from cogumi.router.lexical import LexicalFeatures

SPEC_FILE = "router.json"


class NoArtifactError(ArtifactError):
    """The router/detector to load does not exist: a usage mistake (train it first), exit 2."""

    exit_code = 2


def artifact_folder(ref_or_path, store: ArtifactStore | None, stage: str) -> Path:
    """A folder given directly, or an artifact ref resolved in the store (default: outputs/artifacts)."""
    path = Path(str(ref_or_path))
    if path.is_dir():
        return path
    store = store or ArtifactStore(outputs_dir() / "artifacts")
    try:
        return store.resolve(ref_or_path).path
    except ArtifactError as err:
        raise NoArtifactError(f"no {stage} artifact: {err} (train one: python train.py stage={stage})") from err


def encoder_settings(spec: dict) -> tuple[int | None, str | None]:
    """(layers, quantize) of the encoder the head was trained on (None, None: all layers, fp32; older artifacts)."""
    encoder = spec.get("encoder", {})
    layers = encoder.get("layers")
    return (None if layers is None else int(layers)), encoder.get("quantize")


def check_encoder(spec: dict, folder: Path, encoder_dir: str | None) -> None:
    """Refuse a head trained on another sentence encoder's vectors (layers and quantization come from the spec)."""
    available = encoder_identity(encoder_dir, *encoder_settings(spec))
    trained = spec.get("encoder", {})
    if trained.get("sha256") != available["sha256"]:
        raise ArtifactError(f"{folder / SPEC_FILE}: trained on encoder {trained.get('name')} "
                            f"(sha256 {str(trained.get('sha256'))[:12]}), but the available encoder is "
                            f"{available['name']} (sha256 {available['sha256'][:12]}): retrain the head")


def load_lexical(spec: dict, folder: Path) -> LexicalFeatures | None:
    """The artifact's lexical features (None: embedding only); refused if the file is not the one trained with."""
    entry = spec.get("lexical")
    if not entry:
        return None
    path = folder / entry["file"]
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        raise ArtifactError(f"{path}: missing or not the lexical features this head was trained with "
                            f"(sha256 {str(entry.get('sha256'))[:12]} in {SPEC_FILE}): retrain the router")
    return LexicalFeatures.load(path)


class Router:
    def __init__(self, folder: Path, spec: dict, encoder_dir: str | None = None):
        self.folder = folder
        self.spec = spec
        self.domains: list[str] = list(spec["domains"])
        self.threshold: float = float(spec["threshold"])
        self.min_domain_probability: float = float(spec.get("min_domain_probability", 0.0))
        self.head = Head.load(folder / spec["head"])
        calibrator = spec.get("calibrator")
        self.calibrator = Calibrator(calibrator) if calibrator else None
        self.encoder = shared_encoder(encoder_dir, *encoder_settings(spec))
        self.lexical = load_lexical(spec, folder)
        width = self.encoder.transformer.config.hidden_size + (self.lexical.size if self.lexical else 0)
        if self.head.inputs != width:
            raise ArtifactError(f"{folder / spec['head']}: the head reads {self.head.inputs} inputs, but the encoder"
                                f"{' and lexical features' if self.lexical else ''} give {width}: retrain the head")

    def classify(self, text: str) -> policy.DomainPrediction:
        return self.classify_texts([text])[0]

    def classify_texts(self, texts: list[str]) -> list[policy.DomainPrediction]:
        texts = list(texts)
        return self.classify_vectors(self.encoder.encode(texts), texts)

    def classify_vectors(self, vectors: np.ndarray, texts: list[str] | None = None) -> list[policy.DomainPrediction]:
        """Predictions from the texts' embeddings (and the texts themselves when the head reads lexical features)."""
        if self.lexical is not None and (texts is None or len(texts) != len(vectors)):
            raise ArtifactError(f"{self.folder}: this router also reads lexical features: pass the texts")
        rows = (self.head.probabilities(vectors) if self.lexical is None else
                self.head.probabilities_parts(vectors, self.lexical.transform(texts)))
        predictions = []
        for row in rows:
            probabilities = {d: round(float(p), 4) for d, p in zip(self.domains, row)}
            best = int(row.argmax())
            domain = self.domains[best] if row[best] >= self.min_domain_probability else policy.UNKNOWN_DOMAIN
            predictions.append(policy.DomainPrediction(domain, probabilities))
        return predictions

    def confidence(self, token_logprobs: list[float], top_logprobs: list[dict[str, float]] | None = None,
                   options: dict | None = None) -> float:
        """Calibrated P(correct) of an answer the base gave, from its per-token logprobs (and MC options)."""
        if self.calibrator is None:
            raise ArtifactError(f"{self.folder}: this router has no confidence calibrator")
        return self.calibrator.probability(token_logprobs, top_logprobs, options)

    def decide(self, text: str, *, mode: str = "balanced", confidence: float | None = None,
               modifiers=frozenset(), teacher_available: bool = False,
               threshold: float | None = None) -> policy.RouterDecision:
        return policy.decide(self.classify(text), threshold=self.threshold if threshold is None else threshold,
                             mode=mode, confidence=confidence, modifiers=modifiers,
                             teacher_available=teacher_available)


def load_router(ref_or_path="latest:router", store: ArtifactStore | None = None,
                encoder_dir: str | None = None) -> Router:
    """A router artifact by ref (`latest:router`, `router/<name>`) or folder; project errors if unusable."""
    folder = artifact_folder(ref_or_path, store, "router")
    if not (folder / SPEC_FILE).is_file():
        raise ArtifactError(f"{folder}: not a router artifact (no {SPEC_FILE})")
    spec = json.loads((folder / SPEC_FILE).read_text())
    check_encoder(spec, folder, encoder_dir)
    return Router(folder, spec, encoder_dir)

